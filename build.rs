// The defaults in these folders are embedded with `include_dir!`, which cargo does not track:
// rebuild when any of them changes.
fn main() {
    for dir in ["playbooks", "stdlib", "templates", "config"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
