//! Compute resource identifier codes (compute-provider-access §2): what a certified enterprise
//! applies for, the catalogs its fields come from (GB/T 2260 divisions, GB/T 4754 industries),
//! and the 16-digit code an approval issues.
//!
//! ## Layout of a code
//!
//! ```text
//! position  1-5    6-7       8-9   10    11-12     13-15   16
//!           EEEEE  PP        CC    Z     II        SSS     K
//!           │      │         │     │     │         │       └ ISO 7064 MOD 11-10 check digit
//!           │      │         │     │     │         └ serial 000-999 within the first 12 digits
//!           │      │         │     │     └ GB/T 4754 division (01-97)
//!           │      │         │     └ availability zone (0-9)
//!           │      │         └ city: digits 3-4 of its GB/T 2260 code
//!           │      └ province: digits 1-2 of its GB/T 2260 code
//!           └ the enterprise id (5 digits)
//! ```
//!
//! Example: `10001 44 03 1 65 000 K` is enterprise 10001's first code in Shenzhen (440300),
//! zone 1, software and IT services (65). The province and city digits give back the full
//! six-digit codes (`PP0000`, `PPCC00`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::DomainError;
use super::provider::ReviewStatus;

/// The GB/T 2260 table shipped with liutong.
const GB2260: &str = include_str!("../../data/gb2260.json");
/// The GB/T 4754 table shipped with liutong.
const GB4754: &str = include_str!("../../data/gb4754.json");

/// How many codes one (enterprise, province, city, zone, industry) can have: serials 000-999.
pub const SERIALS: i64 = 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Division {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Province {
    pub code: String,
    pub name: String,
    pub cities: Vec<Division>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section {
    pub code: String,
    pub name: String,
    pub divisions: Vec<Division>,
}

/// `GET /v1/provider/identifiers/catalog`.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub provinces: Vec<Province>,
    pub industries: Vec<Section>,
    /// Availability zones: one digit.
    pub zones: Vec<String>,
    /// The layout of a code, for people.
    pub layout: &'static str,
}

pub const LAYOUT: &str = "EEEEE PP CC Z II SSS K: enterprise id (5), province (GB/T 2260 digits \
     1-2), city (GB/T 2260 digits 3-4), availability zone (1), industry (GB/T 4754 division, 2), \
     serial (3), ISO 7064 MOD 11-10 check digit (1)";

#[derive(Deserialize)]
struct DivisionsFile {
    provinces: Vec<Province>,
}

#[derive(Deserialize)]
struct IndustriesFile {
    sections: Vec<Section>,
}

struct Tables {
    catalog: Catalog,
    /// city code → province code
    cities: BTreeMap<String, String>,
    industries: BTreeMap<String, String>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        // The tables are part of the binary and checked by the tests: failing to read them is
        // a build defect, so an empty table (every application refused) is the safe outcome.
        let provinces = serde_json::from_str::<DivisionsFile>(GB2260)
            .map(|f| f.provinces)
            .unwrap_or_default();
        let industries = serde_json::from_str::<IndustriesFile>(GB4754)
            .map(|f| f.sections)
            .unwrap_or_default();
        let cities = provinces
            .iter()
            .flat_map(|p| p.cities.iter().map(|c| (c.code.clone(), p.code.clone())))
            .collect();
        let industry_names = industries
            .iter()
            .flat_map(|s| s.divisions.iter().map(|d| (d.code.clone(), d.name.clone())))
            .collect();
        Tables {
            catalog: Catalog {
                provinces,
                industries,
                zones: (0..10).map(|z| z.to_string()).collect(),
                layout: LAYOUT,
            },
            cities,
            industries: industry_names,
        }
    })
}

pub fn catalog() -> &'static Catalog {
    &tables().catalog
}

/// `POST /v1/provider/identifiers` body (schemas/provider.identifiers.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifierRequest {
    /// GB/T 2260 six-digit province code, e.g. "440000".
    pub province: String,
    /// GB/T 2260 six-digit city (prefecture) code in that province, e.g. "440300".
    pub city: String,
    /// Availability zone, one digit.
    pub zone: String,
    /// GB/T 4754 division, two digits, e.g. "65".
    pub industry: String,
}

impl IdentifierRequest {
    /// Checks the fields against the catalogs.
    pub fn check(&self) -> Result<(), DomainError> {
        let t = tables();
        if !t.catalog.provinces.iter().any(|p| p.code == self.province) {
            return Err(DomainError::invalid(
                "/province",
                format!(
                    "'{}' is not a GB/T 2260 province code (see GET /v1/provider/identifiers/catalog)",
                    self.province
                ),
            ));
        }
        match t.cities.get(&self.city) {
            Some(p) if *p == self.province => {}
            Some(_) => {
                return Err(DomainError::invalid(
                    "/city",
                    format!("'{}' is not in province '{}'", self.city, self.province),
                ));
            }
            None => {
                return Err(DomainError::invalid(
                    "/city",
                    format!("'{}' is not a GB/T 2260 city code", self.city),
                ));
            }
        }
        if self.zone.len() != 1 || !self.zone.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::invalid("/zone", "must be one digit, 0-9"));
        }
        if !t.industries.contains_key(&self.industry) {
            return Err(DomainError::invalid(
                "/industry",
                format!("'{}' is not a GB/T 4754 division (01-97)", self.industry),
            ));
        }
        Ok(())
    }

    /// The first 12 digits of the codes of this application for `enterprise_id`: everything
    /// before the serial.
    pub fn prefix(&self, enterprise_id: &str) -> String {
        format!(
            "{enterprise_id}{}{}{}{}",
            self.province.get(..2).unwrap_or_default(),
            self.city.get(2..4).unwrap_or_default(),
            self.zone,
            self.industry
        )
    }
}

/// The ISO 7064 MOD 11-10 check digit of a string of digits (`None` if it has anything else).
pub fn mod11_10(digits: &str) -> Option<u8> {
    let mut p: u32 = 10;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        let mut s = (p + u32::from(b - b'0')) % 10;
        if s == 0 {
            s = 10;
        }
        p = (2 * s) % 11;
    }
    // The check digit c makes (p + c) mod 10 = 1.
    u8::try_from((11 - p) % 10).ok()
}

/// The code of serial `serial` under `prefix` (12 digits).
pub fn compose(prefix: &str, serial: i64) -> Result<String, DomainError> {
    if prefix.len() != 12 || !(0..SERIALS).contains(&serial) {
        return Err(DomainError::Invariant(format!(
            "no code for prefix '{prefix}' and serial {serial}"
        )));
    }
    let body = format!("{prefix}{serial:03}");
    let check = mod11_10(&body)
        .ok_or_else(|| DomainError::Invariant(format!("code prefix '{prefix}' is not digits")))?;
    Ok(format!("{body}{check}"))
}

/// A code taken apart (`GET /v1/gateway/codes/{code}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParsedCode {
    pub code: String,
    pub enterprise_id: String,
    /// Six-digit GB/T 2260 codes.
    pub province: String,
    pub city: String,
    pub zone: String,
    pub industry: String,
    pub serial: String,
    pub check_digit_valid: bool,
}

/// Takes a 16-digit code apart; anything but 16 digits is refused.
pub fn parse(code: &str) -> Result<ParsedCode, DomainError> {
    if code.len() != 16 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::invalid("/code", "must be 16 digits"));
    }
    let check = mod11_10(&code[..15]).map(|c| char::from(b'0' + c));
    Ok(ParsedCode {
        code: code.to_owned(),
        enterprise_id: code[..5].to_owned(),
        province: format!("{}0000", &code[5..7]),
        city: format!("{}{}00", &code[5..7], &code[7..9]),
        zone: code[9..10].to_owned(),
        industry: code[10..12].to_owned(),
        serial: code[12..15].to_owned(),
        check_digit_valid: check == code.chars().nth(15),
    })
}

/// A stored application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierApplication {
    pub id: String,
    pub account_id: super::AccountId,
    pub username: String,
    pub enterprise_id: String,
    pub request: IdentifierRequest,
    pub status: ReviewStatus,
    pub reason: Option<String>,
    pub code: Option<String>,
    pub submitted_at: i64,
    pub reviewed_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationCreated {
    pub application_id: String,
    pub status: ReviewStatus,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationView {
    pub application_id: String,
    pub username: String,
    pub enterprise_id: String,
    pub province: String,
    pub city: String,
    pub zone: String,
    pub industry: String,
    pub status: ReviewStatus,
    pub reason: Option<String>,
    pub code: Option<String>,
    pub submitted_at: String,
    pub reviewed_at: Option<String>,
}

/// `GET /v1/provider/identifiers`: the caller's applications (newest first) and its codes.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationsOfEnterprise {
    pub applications: Vec<ApplicationView>,
    pub codes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplicationsPage {
    pub applications: Vec<ApplicationView>,
}

/// `GET /v1/admin/identifier-applications` query.
#[derive(Debug, Clone, Deserialize)]
pub struct ApplicationsQuery {
    pub status: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

/// The outcome of a review.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDecision {
    pub application_id: String,
    pub status: ReviewStatus,
    pub reason: Option<String>,
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_load() {
        let c = catalog();
        assert_eq!(c.provinces.len(), 31);
        assert!(c.provinces.iter().map(|p| p.cities.len()).sum::<usize>() > 300);
        let divisions: usize = c.industries.iter().map(|s| s.divisions.len()).sum();
        assert_eq!(divisions, 97);
        assert_eq!(c.industries.len(), 20);
    }

    #[test]
    fn check_digits() {
        // Every single-digit change and every adjacent transposition of distinct digits is
        // caught: MOD 11-10 detects both.
        let code = compose("100014403165", 7).expect("code");
        assert_eq!(code.len(), 16);
        assert!(parse(&code).expect("parse").check_digit_valid);
        for i in 0..16 {
            for d in b'0'..=b'9' {
                let mut b = code.as_bytes().to_vec();
                if b[i] == d {
                    continue;
                }
                b[i] = d;
                let changed = String::from_utf8(b).expect("digits");
                assert!(
                    !parse(&changed).expect("parse").check_digit_valid,
                    "{changed}"
                );
            }
        }
        for i in 0..15 {
            let mut b = code.as_bytes().to_vec();
            if b[i] == b[i + 1] {
                continue;
            }
            b.swap(i, i + 1);
            let swapped = String::from_utf8(b).expect("digits");
            assert!(
                !parse(&swapped).expect("parse").check_digit_valid,
                "{swapped}"
            );
        }
        assert!(parse("123").is_err());
        assert!(parse("10001440316500A1").is_err());
    }

    #[test]
    fn parsing_gives_the_fields_back() {
        let req = IdentifierRequest {
            province: "440000".into(),
            city: "440300".into(),
            zone: "1".into(),
            industry: "65".into(),
        };
        req.check().expect("valid");
        let code = compose(&req.prefix("10001"), 42).expect("code");
        let parsed = parse(&code).expect("parse");
        assert_eq!(parsed.enterprise_id, "10001");
        assert_eq!(parsed.province, "440000");
        assert_eq!(parsed.city, "440300");
        assert_eq!(parsed.zone, "1");
        assert_eq!(parsed.industry, "65");
        assert_eq!(parsed.serial, "042");
        let wrong_city = IdentifierRequest {
            city: "110100".into(),
            ..req.clone()
        };
        assert!(wrong_city.check().is_err());
        let wrong_industry = IdentifierRequest {
            industry: "98".into(),
            ..req
        };
        assert!(wrong_industry.check().is_err());
    }
}
