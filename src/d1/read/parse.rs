//! The text forms D1 holds for the source's numeric, date and time types,
//! parsed back exactly (the inverse of `sink::d1::value`'s renderings):
//! decimals at their scale, dates as days since 1970, times and
//! timestamps in microseconds.

/// `-12.340` at scale 3 -> -12340.
pub(super) fn decimal(t: Option<&str>, scale: i8) -> Option<i128> {
    let t = t?;
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = scale.max(0) as usize;
    if frac.len() > scale || int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i128 = format!("{int}{frac:0<scale$}").parse().ok()?;
    Some(if neg { -v } else { v })
}

pub(super) fn date(t: Option<&str>) -> Option<i32> {
    let d = chrono::NaiveDate::parse_from_str(t?, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((d - epoch).num_days()).ok()
}

pub(super) fn time(t: Option<&str>) -> Option<i64> {
    let t = chrono::NaiveTime::parse_from_str(t?, "%H:%M:%S%.6f").ok()?;
    let midnight = chrono::NaiveTime::from_hms_opt(0, 0, 0)?;
    (t - midnight).num_microseconds()
}

pub(super) fn timestamp(t: Option<&str>, zoned: bool) -> Option<i64> {
    let t = t?;
    let body = if zoned { t.strip_suffix('Z')? } else { t };
    let ts = chrono::NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S%.6f").ok()?;
    Some(ts.and_utc().timestamp_micros())
}
