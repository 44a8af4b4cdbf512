//! Problems found in user input: which file, where in it, and what to do about it.
//!
//! Validation never stops at the first problem: checkers push into [`Problems`] and the caller
//! decides whether the list is fatal.

use std::fmt;

/// Where in a file a problem is: a JSON path (`infrastructure_spec.projects.x.web_droplets`),
/// a line and column (for syntax errors), or the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File,
    Path(String),
    LineColumn(usize, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub location: Location,
    pub message: String,
}

impl Problem {
    pub fn at_path(file: &str, path: &str, message: impl Into<String>) -> Self {
        let location = if path.is_empty() {
            Location::File
        } else {
            Location::Path(path.to_string())
        };
        Problem {
            file: file.to_string(),
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File => write!(f, "{}: {}", self.file, self.message),
            Location::Path(path) => write!(f, "{}: {}: {}", self.file, path, self.message),
            Location::LineColumn(line, column) => {
                write!(f, "{}:{}:{}: {}", self.file, line, column, self.message)
            }
        }
    }
}

/// An ordered list of problems; the order is the order they were found in (file, then path).
#[derive(Debug, Default, Clone)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn new() -> Self {
        Problems(Vec::new())
    }

    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }

    /// `Ok(())` when empty, else the problems as an error.
    pub fn into_result(self) -> Result<(), InvalidInput> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidInput(self))
        }
    }
}

/// One or more problems with the user's input; rendered one per line.
#[derive(Debug, Clone)]
pub struct InvalidInput(pub Problems);

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidInput {}

impl From<Problem> for InvalidInput {
    fn from(problem: Problem) -> Self {
        let mut problems = Problems::new();
        problems.push(problem);
        InvalidInput(problems)
    }
}
