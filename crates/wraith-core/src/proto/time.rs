//! Calendar arithmetic: `expiry-time=` in authorized_keys, the ACME
//! certificate dates and the HTTP `Date:` the decoy sends. No time-zone
//! data: a caller that needs the local zone passes it in as a
//! [`LocalZone`] (the server reads it from the host).

/// The local time zone, as the one thing the parsers need from it: a
/// wall-clock time (seconds since 1970-01-01 00:00 of the local calendar)
/// to unix seconds; `None` for a time that never occurs there (clocks
/// going forward).
pub(crate) type LocalZone = fn(u64) -> Option<u64>;

/// [`LocalZone`] for UTC: wall-clock time is unix time.
#[cfg(test)]
pub(crate) fn utc(wall: u64) -> Option<u64> {
    Some(wall)
}

/// Days since 1970-01-01 (negative before) for a proleptic Gregorian date,
/// with Howard Hinnant's `days_from_civil`.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDD[HHMM[SS]]` as a wall-clock time: seconds since 1970-01-01
/// 00:00 of the same calendar, no zone applied. `None` for another shape,
/// a field out of range, or a date before 1970.
pub(crate) fn parse_wall_clock(v: &str) -> Option<u64> {
    if !v.bytes().all(|b| b.is_ascii_digit()) || !matches!(v.len(), 8 | 12 | 14) {
        return None;
    }
    let num = |a: usize, b: usize| v.get(a..b).and_then(|s| s.parse::<i64>().ok());
    let (y, m, d) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
    let (hh, mm, ss) = (
        num(8, 10).unwrap_or(0),
        num(10, 12).unwrap_or(0),
        num(12, 14).unwrap_or(0),
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok()
}

/// An RFC 9110 IMF-fixdate ("Tue, 24 Nov 2026 02:37:15 GMT").
#[cfg_attr(not(feature = "tls"), allow(dead_code))] // the decoy's and ACME's Date
pub(crate) fn http_date(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[(days % 7) as usize],
        day,
        MON[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::{days_from_civil, http_date, parse_wall_clock};

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2030, 1, 1), 21_915);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn wall_clock_times() {
        assert_eq!(parse_wall_clock("19700101"), Some(0));
        assert_eq!(parse_wall_clock("197001010001"), Some(60));
        assert_eq!(parse_wall_clock("20000229123456"), Some(951_827_696));
        assert_eq!(parse_wall_clock("20300101"), Some(1_893_456_000));
        for bad in [
            "2030",
            "203001011",
            "20301301",
            "20300100",
            "20300132",
            "203001012400",
            "203001010060",
            "20300101000060",
            "19691231",
            "2030010a",
            "+0300101",
        ] {
            assert_eq!(parse_wall_clock(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn date_format() {
        assert_eq!(http_date(1_795_487_835), "Tue, 24 Nov 2026 02:37:15 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
