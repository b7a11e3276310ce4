//! Canonical decimal text, as `String(new Decimal(text))` (decimal.js) prints it.
//!
//! PostgreSQL prints `numeric` with the column's scale (`1.50`); Prisma's reference executor
//! re-prints every `Decimal` through decimal.js, which drops insignificant zeros and switches
//! to exponential notation for exponents `>= 21` or `<= -7`.

/// Canonicalise a decimal string; `None` if it is not a number decimal.js accepts.
pub fn canonical_decimal(text: &str) -> Option<String> {
    let s = text.trim();
    match s {
        "NaN" | "nan" => return Some("NaN".into()),
        "Infinity" | "+Infinity" | "inf" => return Some("Infinity".into()),
        "-Infinity" | "-inf" => return Some("-Infinity".into()),
        _ => {}
    }
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().chain(frac_part.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let all: String = format!("{int_part}{frac_part}");
    let leading = all.bytes().take_while(|c| *c == b'0').count();
    if leading == all.len() {
        return Some("0".into());
    }
    let trimmed_end = all.trim_end_matches('0');
    let digits = &trimmed_end[leading..];
    // Decimal exponent of the first significant digit.
    let point_exp = int_part.len() as i64 - 1 - leading as i64 + exp;
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    let k = digits.len() as i64;
    if point_exp >= 21 || point_exp <= -7 {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if point_exp >= 0 { '+' } else { '-' });
        out.push_str(&point_exp.abs().to_string());
    } else if point_exp < 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-point_exp - 1) as usize));
        out.push_str(digits);
    } else if point_exp + 1 >= k {
        out.push_str(digits);
        out.push_str(&"0".repeat((point_exp + 1 - k) as usize));
    } else {
        let split = (point_exp + 1) as usize;
        out.push_str(&digits[..split]);
        out.push('.');
        out.push_str(&digits[split..]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::canonical_decimal as c;

    #[test]
    fn canonical_forms() {
        assert_eq!(c("1.50").unwrap(), "1.5");
        assert_eq!(c("-0.00").unwrap(), "0");
        assert_eq!(c("100").unwrap(), "100");
        assert_eq!(c("0.0000001").unwrap(), "1e-7");
        assert_eq!(c("0.000001").unwrap(), "0.000001");
        assert_eq!(c("123456789012345678901234").unwrap(), "1.23456789012345678901234e+23");
        assert_eq!(c("00012.3400").unwrap(), "12.34");
        assert_eq!(c("1e3").unwrap(), "1000");
        assert_eq!(c("NaN").unwrap(), "NaN");
        assert_eq!(c(".5").unwrap(), "0.5");
        assert!(c("abc").is_none());
        assert!(c("").is_none());
    }
}
