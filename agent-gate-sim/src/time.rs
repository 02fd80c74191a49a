//! UTC timestamps as Home Assistant writes them (Python's `datetime.isoformat()`),
//! and a parser for the ISO 8601 forms its REST API accepts.
//!
//! A tiny hand-written formatter is enough here: the simulator only needs UTC instants
//! with microsecond precision, so no calendar or time-zone crate is pulled in.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// An instant in UTC with microsecond precision (microseconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `micros` microseconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// The instant `seconds` seconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(MICROS_PER_SECOND))
    }

    /// Microseconds since the Unix epoch.
    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// The current wall-clock time (the epoch if the system clock is set before it).
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }

    /// This instant moved `duration` later (saturating).
    pub fn plus(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration_micros(duration)))
    }

    /// This instant moved `duration` earlier (saturating).
    pub fn minus(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(duration_micros(duration)))
    }

    /// Midnight (00:00 UTC) of this instant's day.
    pub fn start_of_day(self) -> Self {
        let day_micros = SECONDS_PER_DAY * MICROS_PER_SECOND;
        Self(self.0.div_euclid(day_micros) * day_micros)
    }

    /// Parses the forms Home Assistant's `dt_util.parse_datetime` accepts: a date
    /// (`2026-11-20`), optionally followed by `T` or a space and `HH:MM`, `HH:MM:SS` or
    /// `HH:MM:SS.ffffff`, optionally followed by `Z`, `±HH:MM` or `±HHMM`. A time without
    /// an offset is taken as UTC (the simulated home's time zone).
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let mut cursor = Cursor { bytes, pos: 0 };
        let year = cursor.digits(4)?;
        cursor.expect(b'-')?;
        let month = cursor.digits(2)?;
        cursor.expect(b'-')?;
        let day = cursor.digits(2)?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        let (mut hour, mut minute, mut second, mut micros) = (0, 0, 0, 0);
        let mut offset_seconds = 0;
        if cursor.peek().is_some() {
            if !matches!(cursor.next(), Some(b'T' | b't' | b' ')) {
                return None;
            }
            hour = cursor.digits(2)?;
            cursor.expect(b':')?;
            minute = cursor.digits(2)?;
            if cursor.peek() == Some(b':') {
                cursor.pos += 1;
                second = cursor.digits(2)?;
                if cursor.peek() == Some(b'.') {
                    cursor.pos += 1;
                    micros = cursor.fraction_micros()?;
                }
            }
            if hour > 23 || minute > 59 || second > 59 {
                return None;
            }
            match cursor.next() {
                None => {}
                Some(b'Z' | b'z') => {}
                Some(sign @ (b'+' | b'-')) => {
                    let offset_hours = cursor.digits(2)?;
                    if cursor.peek() == Some(b':') {
                        cursor.pos += 1;
                    }
                    let offset_minutes = cursor.digits(2)?;
                    if offset_hours > 23 || offset_minutes > 59 {
                        return None;
                    }
                    offset_seconds = offset_hours * 3600 + offset_minutes * 60;
                    if sign == b'-' {
                        offset_seconds = -offset_seconds;
                    }
                }
                Some(_) => return None,
            }
            if cursor.peek().is_some() {
                return None;
            }
        }
        let days = days_from_civil(year, month, day);
        let seconds = days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset_seconds;
        Some(Self(seconds * MICROS_PER_SECOND + micros))
    }
}

impl fmt::Display for Timestamp {
    /// Formats like Python's `datetime.isoformat()` for a UTC datetime:
    /// `2026-11-21T16:37:21.123456+00:00`, without the fraction when it is zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.rem_euclid(MICROS_PER_SECOND);
        let t = crate::calendar::utc_fields(self.0.div_euclid(MICROS_PER_SECOND));
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        )?;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        f.write_str("+00:00")
    }
}

fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn expect(&mut self, wanted: u8) -> Option<()> {
        (self.next()? == wanted).then_some(())
    }

    fn digits(&mut self, count: usize) -> Option<i64> {
        let mut value = 0i64;
        for _ in 0..count {
            let byte = self.next()?;
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(byte - b'0');
        }
        Some(value)
    }

    /// One to six fractional digits, as microseconds.
    fn fraction_micros(&mut self) -> Option<i64> {
        let mut value = 0i64;
        let mut count = 0;
        while let Some(byte) = self.peek().filter(u8::is_ascii_digit) {
            if count == 6 {
                return None;
            }
            value = value * 10 + i64::from(byte - b'0');
            count += 1;
            self.pos += 1;
        }
        if count == 0 {
            return None;
        }
        for _ in count..6 {
            value *= 10;
        }
        Some(value)
    }
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_isoformat() {
        assert_eq!(
            Timestamp::from_unix_seconds(0).to_string(),
            "1970-01-01T00:00:00+00:00"
        );
        let t = Timestamp::from_unix_micros(1_795_797_441_123_456);
        assert_eq!(t.to_string(), "2026-11-27T16:37:21.123456+00:00");
        assert_eq!(
            Timestamp::from_unix_micros(951_782_400_000_001).to_string(),
            "2000-02-29T00:00:00.000001+00:00"
        );
        assert_eq!(
            Timestamp::from_unix_seconds(-1).to_string(),
            "1969-12-31T23:59:59+00:00"
        );
    }

    #[test]
    fn parses_what_it_formats_and_the_forms_home_assistant_accepts() {
        for micros in [
            0,
            1,
            951_782_400_000_001,
            1_795_797_441_123_456,
            -86_400_000_001,
        ] {
            let t = Timestamp::from_unix_micros(micros);
            assert_eq!(Timestamp::parse(&t.to_string()), Some(t), "{t}");
        }
        let base = Timestamp::parse("2026-11-20T08:00:00Z").unwrap();
        assert_eq!(Timestamp::parse("2026-11-20T08:00:00+00:00"), Some(base));
        assert_eq!(Timestamp::parse("2026-11-20T10:00:00+02:00"), Some(base));
        assert_eq!(Timestamp::parse("2026-11-20T03:30-0430"), Some(base));
        assert_eq!(Timestamp::parse("2026-11-20 08:00"), Some(base));
        assert_eq!(
            Timestamp::parse("2026-11-20T08:00:00.5Z"),
            Some(base.plus(Duration::from_millis(500)))
        );
        assert_eq!(Timestamp::parse("2026-11-20"), Some(base.start_of_day()));
        for bad in [
            "",
            "2026-13-01",
            "2026-02-30",
            "2026-11-20T25:00",
            "2026-11-20T08:00:00+0",
            "yesterday",
            "2026-11-20T08:00:00.1234567",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }
}
