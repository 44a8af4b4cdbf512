//! Standard output that a closed pipe cannot turn into a panic. `infra status | head -1` closes
//! the pipe after one line; like ripgrep, infra takes that as the reader having seen enough
//! and exits 0 quietly, instead of `println!`'s "failed printing to stdout" panic.

use std::io::Write;

/// Writes `text` as it is.
pub fn text(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        closed(e);
    }
}

/// Writes `text` and a newline.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        closed(e);
    }
}

fn closed(e: std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    tracing::warn!("cannot write to standard output: {e}");
}

/// For `println!`s this module does not see (a library's, a test's): a panic whose message is
/// a broken pipe on standard output ends the process with 0 and no message.
pub fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
