//! Date and time helpers with JavaScript `Date` semantics.
//!
//! Prisma moves instants around as ISO-8601 strings and JavaScript `Date`s, which have
//! millisecond precision. This module parses the string forms Prisma and PostgreSQL produce,
//! prints `Date.prototype.toISOString()` output, and prints the naive UTC text that
//! `@prisma/adapter-pg` binds for `datetime` parameters.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

/// Current time in milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

fn from_millis(ms: i64) -> Option<NaiveDateTime> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|d| d.naive_utc())
}

/// `new Date(ms).toISOString()`; out-of-range instants print as `Invalid Date`.
pub fn format_iso_millis(ms: i64) -> String {
    let Some(dt) = from_millis(ms) else {
        return "Invalid Date".into();
    };
    let year = dt.year();
    let year_text = if (0..=9999).contains(&year) { format!("{year:04}") } else { format!("{}{:06}", if year < 0 { '-' } else { '+' }, year.unsigned_abs()) };
    format!("{year_text}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", dt.month(), dt.day(), dt.hour(), dt.minute(), dt.second(), dt.nanosecond() / 1_000_000 % 1000)
}

/// The text `@prisma/adapter-pg` sends for a `datetime` parameter: UTC without offset, shaped by
/// the column's `dbType`, milliseconds only when non-zero.
pub fn format_db_datetime(ms: i64, db_type: Option<&str>) -> Option<String> {
    let dt = from_millis(ms)?;
    let millis = dt.nanosecond() / 1_000_000 % 1000;
    let frac = if millis == 0 { String::new() } else { format!(".{millis:03}") };
    let time = format!("{:02}:{:02}:{:02}{frac}", dt.hour(), dt.minute(), dt.second());
    let date = format!("{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day());
    let db_type = db_type.map(str::to_ascii_uppercase);
    Some(match db_type.as_deref() {
        Some("DATE") => date,
        Some("TIME" | "TIMETZ") => time,
        _ => format!("{date} {time}"),
    })
}

/// Parse an ISO-8601-like date string the way `new Date(text)` does for the forms Prisma and
/// PostgreSQL produce: `YYYY-MM-DD`, optional `T`/space time with fraction, optional `Z`,
/// `±HH`, `±HHMM` or `±HH:MM`; a missing zone is taken as UTC. Returns epoch milliseconds.
pub fn parse_js_date(text: &str) -> Option<i64> {
    let s = text.trim();
    if !s.is_ascii() {
        return None;
    }
    let (date_part, rest) = split_date(s)?;
    let date = parse_date(date_part)?;
    if rest.is_empty() {
        return Some(date.and_time(NaiveTime::MIN).and_utc().timestamp_millis());
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (time_part, offset_minutes) = split_zone(rest)?;
    let time = parse_time(time_part)?;
    let naive = date.and_time(time);
    let ms = naive.and_utc().timestamp_millis();
    Some(ms - i64::from(offset_minutes) * 60_000)
}

fn split_date(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    // Extended years (`+002024`, `-000044`) have a sign and six digits.
    let year_len = if matches!(b.first(), Some(b'+' | b'-')) { 7 } else { 4 };
    let len = year_len + 6;
    if b.len() < len {
        return None;
    }
    Some(s.split_at(len))
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let (y, rest) = s.split_at(s.len() - 6);
    let year: i32 = y.parse().ok()?;
    let rest = rest.as_bytes();
    if rest[0] != b'-' || rest[3] != b'-' {
        return None;
    }
    let month = two_digits(&rest[1..3])?;
    let day = two_digits(&rest[4..6])?;
    NaiveDate::from_ymd_opt(year, month, day)
}

fn two_digits(b: &[u8]) -> Option<u32> {
    if b.len() == 2 && b.iter().all(u8::is_ascii_digit) {
        Some(u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0'))
    } else {
        None
    }
}

/// Split `HH:MM[:SS[.fff]][zone]` into the time text and the zone offset in minutes.
fn split_zone(s: &str) -> Option<(&str, i32)> {
    if let Some(t) = s.strip_suffix(['Z', 'z']) {
        return Some((t, 0));
    }
    let Some(pos) = s.rfind(['+', '-']) else {
        return Some((s, 0));
    };
    let (time, zone) = s.split_at(pos);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: Vec<u8> = zone[1..].bytes().filter(|c| *c != b':').collect();
    let (h, m) = match digits.len() {
        2 => (two_digits(&digits)?, 0),
        4 => (two_digits(&digits[..2])?, two_digits(&digits[2..])?),
        _ => return None,
    };
    Some((time, sign * (h as i32 * 60 + m as i32)))
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    let parts: Vec<&str> = main.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let h = two_digits(parts[0].as_bytes())?;
    let m = two_digits(parts[1].as_bytes())?;
    let sec = match parts.get(2) {
        Some(p) => two_digits(p.as_bytes())?,
        None => 0,
    };
    let millis = match frac {
        Some(f) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => {
            let padded = format!("{f:0<3}");
            padded[..3].parse::<u32>().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    NaiveTime::from_hms_milli_opt(h, m, sec, millis)
}

/// The data mapper's normalisation of driver datetime strings into a form `new Date()`
/// accepts: space → `T`, `Z` added when no zone, `+HH` gets `:00`, bare dates get
/// `T00:00:00Z`, bare times get the `1970-01-01T` date.
pub fn normalize_datetime_text(dt: &str) -> String {
    let Some((time_start, zone)) = find_time_with_zone(dt) else {
        return format!("{dt}T00:00:00Z");
    };
    let mut with_tz = dt.to_owned();
    match zone {
        Zone::HoursOnly => with_tz.push_str(":00"),
        Zone::Missing => with_tz.push('Z'),
        Zone::Full => {}
    }
    if time_start == 0 {
        return format!("1970-01-01T{with_tz}");
    }
    if dt.as_bytes()[time_start - 1] == b' ' {
        with_tz.replace_range(time_start - 1..time_start, "T");
    }
    with_tz
}

enum Zone {
    Missing,
    HoursOnly,
    Full,
}

/// Find a trailing `HH:MM:SS[.f+][Z|±HH[[:]MM]]`; returns where the time starts.
fn find_time_with_zone(s: &str) -> Option<(usize, Zone)> {
    let b = s.as_bytes();
    let mut end = b.len();
    let mut zone = Zone::Missing;
    // Zone suffix.
    if end > 0 && b[end - 1] == b'Z' {
        zone = Zone::Full;
        end -= 1;
    } else {
        let mut j = end;
        while j > 0 && b[j - 1].is_ascii_digit() {
            j -= 1;
        }
        let tail = end - j;
        let colon_form = j >= 4 && b[j - 1] == b':' && tail == 2 && matches!(b[j - 4], b'+' | b'-');
        if colon_form && b[j - 3..j - 1].iter().all(u8::is_ascii_digit) {
            zone = Zone::Full;
            end = j - 4;
        } else if j >= 1 && matches!(b[j - 1], b'+' | b'-') && (tail == 2 || tail == 4) {
            zone = if tail == 2 { Zone::HoursOnly } else { Zone::Full };
            end = j - 1;
        }
    }
    // Optional fraction.
    let mut t = end;
    while t > 0 && b[t - 1].is_ascii_digit() {
        t -= 1;
    }
    if t > 0 && b[t - 1] == b'.' && t < end {
        end = t - 1;
    }
    // HH:MM:SS
    if end < 8 {
        return None;
    }
    let start = end - 8;
    let hms = &b[start..end];
    let ok = hms[2] == b':' && hms[5] == b':' && [0, 1, 3, 4, 6, 7].iter().all(|&i| hms[i].is_ascii_digit());
    ok.then_some((start, zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_roundtrip() {
        let ms = parse_js_date("2026-11-27T21:18:54.330Z").unwrap();
        assert_eq!(format_iso_millis(ms), "2026-11-27T21:18:54.330Z");
        let ms = parse_js_date("2026-11-27 21:18:54.330123+00:00").unwrap();
        assert_eq!(format_iso_millis(ms), "2026-11-27T21:18:54.330Z");
        let ms = parse_js_date("2026-11-27T23:18:54+02").unwrap();
        assert_eq!(format_iso_millis(ms), "2026-11-27T21:18:54.000Z");
        let ms = parse_js_date("2024-02-29").unwrap();
        assert_eq!(format_iso_millis(ms), "2024-02-29T00:00:00.000Z");
        assert_eq!(parse_js_date("2024-02-30"), None);
        assert_eq!(parse_js_date("nope"), None);
        let ms = parse_js_date("+012345-01-01T00:00:00Z").unwrap();
        assert_eq!(format_iso_millis(ms), "+012345-01-01T00:00:00.000Z");
    }

    #[test]
    fn db_formats() {
        let ms = parse_js_date("2026-11-27T21:18:54.330Z").unwrap();
        assert_eq!(format_db_datetime(ms, Some("TIMESTAMP")).unwrap(), "2026-11-27 21:18:54.330");
        assert_eq!(format_db_datetime(ms, Some("DATE")).unwrap(), "2026-11-27");
        assert_eq!(format_db_datetime(ms, Some("TIMETZ")).unwrap(), "21:18:54.330");
        let ms = parse_js_date("2026-11-27T21:18:54Z").unwrap();
        assert_eq!(format_db_datetime(ms, None).unwrap(), "2026-11-27 21:18:54");
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize_datetime_text("2024-01-02"), "2024-01-02T00:00:00Z");
        assert_eq!(normalize_datetime_text("12:34:56"), "1970-01-01T12:34:56Z");
        assert_eq!(normalize_datetime_text("2024-01-02 12:34:56.5+02"), "2024-01-02T12:34:56.5+02:00");
        assert_eq!(normalize_datetime_text("2024-01-02T12:34:56+00:00"), "2024-01-02T12:34:56+00:00");
        assert_eq!(normalize_datetime_text("2024-01-02 12:34:56"), "2024-01-02T12:34:56Z");
    }
}
