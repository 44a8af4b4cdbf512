//! A guard that takes the project's sandbox down when it goes out of scope, however the
//! benchmark ends, so no droplet is left running.

use std::path::Path;
use std::process::Command;

pub struct Down<'a>(pub &'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_infra"))
            .args(["sandbox", "down"])
            .current_dir(self.0)
            .output();
    }
}
