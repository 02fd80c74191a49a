//! UTC timestamps as Home Assistant writes them (Python's `datetime.isoformat()`),
//! and a parser for the ISO 8601 forms its REST API accepts.
//!
//! [`Timestamp`] is a thin wrapper over [`time::UtcDateTime`], the workspace's one time type:
//! the calendar, the formatting and the parsing are the `time` crate's; this module only
//! pins Home Assistant's forms as format descriptions and keeps the simulator's instants at
//! microsecond precision, like Python's `datetime`.

use std::fmt;
use std::time::Duration;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::parsing::Parsed;
use time::{Date, PrimitiveDateTime, SignedDuration, Time, UtcDateTime, UtcOffset};

/// An instant in UTC with microsecond precision, within the years -9999..=9999 that
/// [`UtcDateTime`] covers (constructors and arithmetic saturate at that range's ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(UtcDateTime);

/// `isoformat()` of a UTC datetime whose microseconds are zero: no fraction.
const WHOLE_SECONDS: &[BorrowedFormatItem<'_>] = format_description!(
    version = 2,
    "[year]-[month]-[day]T[hour]:[minute]:[second]+00:00"
);

/// `isoformat()` of a UTC datetime with microseconds: always six digits.
const WITH_MICROSECONDS: &[BorrowedFormatItem<'_>] = format_description!(
    version = 2,
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
);

/// The forms of Home Assistant's `dt_util.parse_datetime` (see [`Timestamp::parse`]). One to six
/// fraction digits: `first` takes the longest run that fits, so a seventh digit is left over
/// and refused as trailing input.
const HOME_ASSISTANT_FORMS: &[BorrowedFormatItem<'_>] = format_description!(
    version = 2,
    "[year]-[month]-[day]\
     [optional [\
        [first [T] [t] [ ]][hour]:[minute]\
        [optional [:[second][optional [.[first \
            [[subsecond digits:6]] [[subsecond digits:5]] [[subsecond digits:4]] \
            [[subsecond digits:3]] [[subsecond digits:2]] [[subsecond digits:1]]\
        ]]]]]\
        [optional [[first [Z] [z] [[offset_hour sign:mandatory][optional [:]][offset_minute]]]]]\
     ]]"
);

impl Timestamp {
    /// The instant `micros` microseconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_micros(micros: i64) -> Self {
        match UtcDateTime::from_unix_timestamp_nanos(micros as i128 * 1000) {
            Ok(at) => Self(at),
            Err(_) => Self::saturated(micros < 0),
        }
    }

    /// The instant `seconds` seconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        match UtcDateTime::from_unix_timestamp(seconds) {
            Ok(at) => Self(at),
            Err(_) => Self::saturated(seconds < 0),
        }
    }

    /// Microseconds since the Unix epoch.
    pub const fn unix_micros(self) -> i64 {
        // Years -9999..=9999 are about ±3.2e17 µs: always within `i64`.
        (self.0.unix_timestamp_nanos() / 1000) as i64
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from(UtcDateTime::now())
    }

    /// This instant moved `duration` later (saturating).
    pub fn plus(self, duration: Duration) -> Self {
        // The latest instant has nanoseconds; `from` keeps whole microseconds.
        Self::from(self.0.saturating_add(signed_micros(duration)))
    }

    /// This instant moved `duration` earlier (saturating).
    pub fn minus(self, duration: Duration) -> Self {
        Self::from(self.0.saturating_sub(signed_micros(duration)))
    }

    /// Midnight (00:00 UTC) of this instant's day.
    pub fn start_of_day(self) -> Self {
        Self(self.0.truncate_to_day())
    }

    /// Parses the forms Home Assistant's `dt_util.parse_datetime` accepts: a date
    /// (`2026-11-20`), optionally followed by `T` or a space and `HH:MM`, `HH:MM:SS` or
    /// `HH:MM:SS.ffffff`, optionally followed by `Z`, `±HH:MM` or `±HHMM`. A time without
    /// an offset is taken as UTC (the simulated home's time zone).
    pub fn parse(text: &str) -> Option<Self> {
        // `[year]` also takes a sign (`+2026-…`); Home Assistant's pattern is four bare digits.
        if !text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let mut parsed = Parsed::new();
        let rest = parsed
            .parse_items(text.as_bytes(), HOME_ASSISTANT_FORMS)
            .ok()?;
        if !rest.is_empty() {
            return None;
        }
        let date = Date::try_from(parsed).ok()?;
        let time = Time::from_hms_nano(
            parsed.hour_24().unwrap_or(0),
            parsed.minute().unwrap_or(0),
            parsed.second().unwrap_or(0),
            parsed.subsecond().unwrap_or(0),
        )
        .ok()?;
        // `time` takes offsets up to ±25:59; Home Assistant's pattern, up to ±23:59.
        let offset_hours = parsed.offset_hour().unwrap_or(0);
        if offset_hours.unsigned_abs() > 23 {
            return None;
        }
        let offset =
            UtcOffset::from_hms(offset_hours, parsed.offset_minute_signed().unwrap_or(0), 0)
                .ok()?;
        let local = PrimitiveDateTime::new(date, time).assume_offset(offset);
        UtcDateTime::from_unix_timestamp_nanos(local.unix_timestamp_nanos())
            .ok()
            .map(Self)
    }

    /// The earliest (`before`) or the latest representable instant, in whole microseconds.
    const fn saturated(before: bool) -> Self {
        if before {
            Self(UtcDateTime::MIN)
        } else {
            Self(UtcDateTime::MAX.truncate_to_microsecond())
        }
    }
}

impl From<UtcDateTime> for Timestamp {
    /// The instant, truncated to whole microseconds.
    fn from(at: UtcDateTime) -> Self {
        Self(at.truncate_to_microsecond())
    }
}

impl From<Timestamp> for UtcDateTime {
    fn from(at: Timestamp) -> Self {
        at.0
    }
}

impl fmt::Display for Timestamp {
    /// Formats like Python's `datetime.isoformat()` for a UTC datetime:
    /// `2026-11-21T16:37:21.123456+00:00`, without the fraction when it is zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = if self.0.microsecond() == 0 {
            WHOLE_SECONDS
        } else {
            WITH_MICROSECONDS
        };
        // Formatting a `UtcDateTime` with date and time components only cannot fail.
        let text = self.0.format(format).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// `duration` truncated to whole microseconds (the simulator's precision), as a `time`
/// duration; durations beyond its range saturate.
fn signed_micros(duration: Duration) -> SignedDuration {
    let truncated = Duration::new(duration.as_secs(), duration.subsec_micros() * 1000);
    SignedDuration::try_from(truncated).unwrap_or(SignedDuration::MAX)
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
    fn known_dates() {
        // (Moved from the hand-written calendar's `civil_from_days` and `utc_fields`.)
        let day = |days: i64| Timestamp::from_unix_seconds(days * 86_400).to_string();
        assert_eq!(day(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(day(-1), "1969-12-31T00:00:00+00:00");
        // 2000-02-29 (a leap day of a century year divisible by 400)
        assert_eq!(day(11_016), "2000-02-29T00:00:00+00:00");
        assert_eq!(
            Timestamp::from_unix_seconds(1_795_279_660).to_string(),
            "2026-11-21T16:47:40+00:00"
        );
        // 1900 is not a leap year, 2024 is.
        assert_eq!(day(-25_508), "1900-03-01T00:00:00+00:00");
        assert_eq!(day(19_782), "2024-02-29T00:00:00+00:00");
    }

    #[test]
    fn keeps_microseconds_and_saturates_at_the_ends() {
        let t = Timestamp::from_unix_micros(-86_400_000_001);
        assert_eq!(t.unix_micros(), -86_400_000_001);
        assert_eq!(t.to_string(), "1969-12-30T23:59:59.999999+00:00");
        // Sub-microsecond parts of a duration are dropped, as Python's `timedelta` does.
        let base = Timestamp::from_unix_seconds(10);
        assert_eq!(
            base.plus(Duration::from_nanos(1_999)).unix_micros(),
            10_000_001
        );
        assert_eq!(
            base.minus(Duration::from_nanos(1_999)).unix_micros(),
            9_999_999
        );
        assert_eq!(
            base.plus(Duration::MAX),
            Timestamp::from_unix_micros(i64::MAX)
        );
        assert_eq!(
            base.minus(Duration::MAX),
            Timestamp::from_unix_micros(i64::MIN)
        );
        assert_eq!(
            Timestamp::from_unix_micros(i64::MAX).to_string(),
            "9999-12-31T23:59:59.999999+00:00"
        );
        assert_eq!(
            Timestamp::from_unix_seconds(i64::MIN).to_string(),
            "-9999-01-01T00:00:00+00:00"
        );
        let now = UtcDateTime::from(Timestamp::now());
        assert_eq!(now.nanosecond() % 1000, 0);
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

    #[test]
    fn parses_the_edges_of_home_assistant_forms() {
        let at = |text: &str| Timestamp::parse(text).map(|t| t.to_string());
        // Leap days.
        assert_eq!(
            at("2024-02-29T12:00"),
            Some("2024-02-29T12:00:00+00:00".into())
        );
        assert_eq!(at("2000-02-29"), Some("2000-02-29T00:00:00+00:00".into()));
        // Negative offsets, across midnight and the year, and under an hour.
        assert_eq!(
            at("2026-12-31T20:00:00-05:00"),
            Some("2027-01-01T01:00:00+00:00".into())
        );
        assert_eq!(
            at("2026-11-20T08:00-00:30"),
            Some("2026-11-20T08:30:00+00:00".into())
        );
        assert_eq!(
            at("2026-11-20T08:00+23:59"),
            Some("2026-11-19T08:01:00+00:00".into())
        );
        // Fractions of one to six digits are scaled to microseconds.
        for (fraction, written) in [
            ("1", ".100000"),
            ("12", ".120000"),
            ("123", ".123000"),
            ("0001", ".000100"),
            ("00001", ".000010"),
            ("000001", ".000001"),
            ("000000", ""),
        ] {
            assert_eq!(
                at(&format!("2026-11-20t08:00:00.{fraction}z")),
                Some(format!("2026-11-20T08:00:00{written}+00:00")),
                "{fraction}"
            );
        }
        assert_eq!(at("0000-01-01"), Some("0000-01-01T00:00:00+00:00".into()));
        for bad in [
            "1900-02-29",
            "2026-11-20T24:00",
            "2026-11-20T08:60",
            "2026-11-20T08:00:60",
            "2026-11-20T08:00:00.",
            "2026-11-20T08:00.5",
            "2026-11-20T08:00+24:00",
            "2026-11-20T08:00+05:60",
            "2026-11-20T08:00+5:00",
            "2026-11-20T08:00 +05:00",
            "2026-11-20T08:00Z ",
            "2026-11-20Z",
            "2026-11-20 ",
            "2026-11-20T8:00",
            "2026-1-20",
            "+2026-11-20",
            "-2026-11-20",
            "20261120",
            "2026-11-20X08:00",
            "2026-11-20T08:00:00UTC",
            // Python's `datetime` holds it, but the UTC instant is past year 9999.
            "9999-12-31T23:30-01:00",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }
}
