//! Freeing large values off the critical path.

/// Frees a large value (a state of thousands of droplets) on another thread: a one-shot
/// command exits without waiting for it, a long-running one still gets the memory back.
pub fn drop_in_background<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}
