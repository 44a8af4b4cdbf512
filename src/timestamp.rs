//! Times in names: `20261202-065028` (UTC, to the second) for release and snapshot names,
//! which sort by time and are valid in image tags and in DigitalOcean's snapshot names.

use std::time::SystemTime;

/// `yyyymmdd-hhmmss`, UTC.
pub fn compact(at: SystemTime) -> String {
    // 2026-12-02T06:50:28Z -> 20261202065028
    let digits: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{}-{}", &digits[..8], &digits[8..14])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn compact_times_are_utc_date_and_time() {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_194_228); // 2026-12-02T06:50:28Z
        assert_eq!(compact(at), "20261202-065028");
    }
}
