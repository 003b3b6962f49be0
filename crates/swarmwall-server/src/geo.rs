//! GeoIP (MaxMind DB) country policies and impossible-travel detection.
//!
//! [`GeoDb`] places a client address (country, continent, coordinates and the database's
//! accuracy radius). [`CountryPolicy::decide`] applies the global and per-account allow/deny
//! lists. [`travel_speed_kmh`] compares two consecutive logins of one account: the great-circle
//! distance (haversine, by hand) minus both accuracy radii, over the elapsed time. The
//! authenticator ([`crate::auth`]) calls all three; nothing here touches the network or the
//! clock.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What to do with a client whose address is not in the GeoIP database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownLocation {
    /// Let it log in (country lists only apply to located addresses).
    Allow,
    /// Refuse it (whenever a GeoIP database is configured).
    Deny,
}

/// What an impossible-travel detection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TravelAction {
    /// No check.
    Off,
    /// Record a security event and count it; the login goes through.
    Alert,
    /// Record, count and refuse the login.
    Deny,
}

/// True for two ASCII letters (an ISO 3166-1 alpha-2 code, any case).
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Why the GeoIP database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// Unreadable or not a MaxMind DB.
    #[error("{path}: cannot open GeoIP database: {message}")]
    Open {
        /// File.
        path: PathBuf,
        /// Cause.
        message: String,
    },
}

/// Where an address is, as far as the database knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: Option<String>,
    /// Two-letter continent code (`EU`, `AS`, ...).
    pub continent: Option<String>,
    /// Latitude and longitude in degrees (City databases only).
    pub coordinates: Option<(f64, f64)>,
    /// The database's accuracy radius in km (0 when not given).
    pub accuracy_km: f64,
}

/// An opened MaxMind DB (City or Country).
pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
    path: PathBuf,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb").field("path", &self.path).finish()
    }
}

impl GeoDb {
    /// Open a `.mmdb` file (read into memory once).
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|error| GeoError::Open {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        Ok(Self {
            reader,
            path: path.to_owned(),
        })
    }

    /// Place `address`; `None` when the database has no record for it.
    pub fn lookup(&self, address: IpAddr) -> Option<Location> {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            IpAddr::V4(_) => address,
        };
        let result = self.reader.lookup(address).ok()?;
        let city: maxminddb::geoip2::City<'_> = result.decode().ok()??;
        let country = city
            .country
            .iso_code
            .or(city.registered_country.iso_code)
            .map(str::to_ascii_uppercase);
        let continent = city.continent.code.map(str::to_owned);
        let coordinates = match (city.location.latitude, city.location.longitude) {
            (Some(lat), Some(lon)) if lat.is_finite() && lon.is_finite() => Some((lat, lon)),
            _ => None,
        };
        if country.is_none() && coordinates.is_none() {
            return None;
        }
        Some(Location {
            country,
            continent,
            coordinates,
            accuracy_km: f64::from(city.location.accuracy_radius.unwrap_or(0)),
        })
    }
}

/// Allow and deny lists of country codes (upper case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountryLists {
    /// Only these countries may log in (empty: any).
    pub allow: Vec<String>,
    /// These countries may not.
    pub deny: Vec<String>,
}

impl CountryLists {
    /// Lists from configuration strings (any case).
    pub fn new(allow: &[String], deny: &[String]) -> Self {
        let upper = |list: &[String]| list.iter().map(|c| c.to_ascii_uppercase()).collect();
        Self {
            allow: upper(allow),
            deny: upper(deny),
        }
    }

    fn refuses(&self, country: &str) -> bool {
        (!self.allow.is_empty() && !self.allow.iter().any(|c| c == country))
            || self.deny.iter().any(|c| c == country)
    }
}

/// The result of a country check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoDecision {
    /// The login may go on.
    Allow,
    /// Refused because of this country's place in a list.
    DenyCountry(String),
    /// Refused because the address could not be placed.
    DenyUnknown,
}

/// Global country policy plus the rule for unknown locations.
#[derive(Debug, Clone)]
pub struct CountryPolicy {
    /// Lists for every account.
    pub global: CountryLists,
    /// What to do with unplaced addresses.
    pub unknown: UnknownLocation,
}

impl CountryPolicy {
    /// Decide for a login of an account with its own `account` lists from a client whose
    /// country is `country` (`None`: not in the database).
    pub fn decide(&self, account: &CountryLists, country: Option<&str>) -> GeoDecision {
        match country {
            None => match self.unknown {
                UnknownLocation::Allow => GeoDecision::Allow,
                UnknownLocation::Deny => GeoDecision::DenyUnknown,
            },
            Some(country) if self.global.refuses(country) || account.refuses(country) => {
                GeoDecision::DenyCountry(country.to_owned())
            }
            Some(_) => GeoDecision::Allow,
        }
    }
}

/// One login, as kept in the per-account history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoginPoint {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Accuracy radius, km.
    pub radius_km: f64,
}

/// Mean Earth radius (IUGG), km.
const EARTH_RADIUS_KM: f64 = 6_371.008_8;

/// Great-circle distance between two points in degrees, km (haversine formula).
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The speed (km/h) needed to go from `from` to `to`: distance minus both accuracy radii (never
/// below zero) over the elapsed time. Zero distance is speed 0; a positive distance in no time
/// (or backwards in time) is infinite.
pub fn travel_speed_kmh(from: &LoginPoint, to: &LoginPoint) -> f64 {
    let distance = haversine_km((from.lat, from.lon), (to.lat, to.lon));
    let distance = (distance - from.radius_km.max(0.0) - to.radius_km.max(0.0)).max(0.0);
    if distance <= 0.0 {
        return 0.0;
    }
    let elapsed_ms = to.at_ms.saturating_sub(from.at_ms);
    if elapsed_ms == 0 {
        return f64::INFINITY;
    }
    #[allow(clippy::cast_precision_loss)] // milliseconds fit an f64 for millions of years
    let hours = elapsed_ms as f64 / 3_600_000.0;
    distance / hours
}

#[cfg(test)]
mod tests {
    use super::*;

    const CITY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/geoip/GeoIP2-City-Test.mmdb"
    );
    const COUNTRY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/geoip/GeoIP2-Country-Test.mmdb"
    );

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn city_database_places_addresses() {
        let db = GeoDb::open(Path::new(CITY)).unwrap();
        let london = db.lookup(ip("81.2.69.142")).unwrap();
        assert_eq!(london.country.as_deref(), Some("GB"));
        assert_eq!(london.continent.as_deref(), Some("EU"));
        let (lat, lon) = london.coordinates.unwrap();
        assert!((lat - 51.5142).abs() < 0.01 && (lon + 0.0931).abs() < 0.01);
        let changchun = db.lookup(ip("175.16.199.0")).unwrap();
        assert_eq!(changchun.country.as_deref(), Some("CN"));
        assert_eq!(changchun.continent.as_deref(), Some("AS"));
        assert_eq!(
            db.lookup(ip("2001:218::1")).unwrap().country.as_deref(),
            Some("JP")
        );
        assert_eq!(
            db.lookup(ip("::ffff:81.2.69.142"))
                .unwrap()
                .country
                .as_deref(),
            Some("GB")
        );
        assert!(db.lookup(ip("8.8.8.8")).is_none());
        assert!(db.lookup(ip("127.0.0.1")).is_none());
    }

    #[test]
    fn country_database_gives_countries_only() {
        let db = GeoDb::open(Path::new(COUNTRY)).unwrap();
        let place = db.lookup(ip("89.160.20.112")).unwrap();
        assert_eq!(place.country.as_deref(), Some("SE"));
        assert_eq!(place.coordinates, None);
        assert_eq!(
            db.lookup(ip("216.160.83.56")).unwrap().country.as_deref(),
            Some("US")
        );
    }

    #[test]
    fn a_missing_or_bad_database_is_an_error() {
        assert!(GeoDb::open(Path::new("/nonexistent.mmdb")).is_err());
        assert!(
            GeoDb::open(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/geoip/SOURCE.md"
            )))
            .is_err()
        );
    }

    #[test]
    fn country_decisions_with_the_test_database() {
        let db = GeoDb::open(Path::new(CITY)).unwrap();
        let country = |text: &str| db.lookup(ip(text)).and_then(|l| l.country);
        let policy = CountryPolicy {
            global: CountryLists::new(&[], &["cn".to_owned()]),
            unknown: UnknownLocation::Allow,
        };
        let none = CountryLists::default();
        assert_eq!(
            policy.decide(&none, country("175.16.199.0").as_deref()),
            GeoDecision::DenyCountry("CN".to_owned())
        );
        assert_eq!(
            policy.decide(&none, country("81.2.69.142").as_deref()),
            GeoDecision::Allow
        );
        assert_eq!(
            policy.decide(&none, country("8.8.8.8").as_deref()),
            GeoDecision::Allow
        );
        // Per-account allow list: only Sweden for this account.
        let sweden_only = CountryLists::new(&["SE".to_owned()], &[]);
        assert_eq!(
            policy.decide(&sweden_only, country("89.160.20.112").as_deref()),
            GeoDecision::Allow
        );
        assert_eq!(
            policy.decide(&sweden_only, country("216.160.83.56").as_deref()),
            GeoDecision::DenyCountry("US".to_owned())
        );
        let strict = CountryPolicy {
            global: CountryLists::default(),
            unknown: UnknownLocation::Deny,
        };
        assert_eq!(
            strict.decide(&none, country("8.8.8.8").as_deref()),
            GeoDecision::DenyUnknown
        );
        assert_eq!(
            strict.decide(&none, country("2001:218::1").as_deref()),
            GeoDecision::Allow
        );
    }

    #[test]
    fn haversine_matches_known_distances() {
        // London to Paris is about 344 km; a quarter meridian is about 10,008 km.
        let london = (51.5074, -0.1278);
        let paris = (48.8566, 2.3522);
        assert!((haversine_km(london, paris) - 343.5).abs() < 2.0);
        assert!((haversine_km((0.0, 0.0), (90.0, 0.0)) - 10_007.5).abs() < 1.0);
        assert!(haversine_km(london, london).abs() < 1e-9);
        // Antipodes do not produce NaN.
        assert!(haversine_km((0.0, 0.0), (0.0, 180.0)).is_finite());
    }

    #[test]
    fn travel_speed_uses_radius_and_time() {
        let at = |at_ms, lat, lon, radius_km| LoginPoint {
            at_ms,
            lat,
            lon,
            radius_km,
        };
        // London then Changchun (about 8,000 km) ten minutes later: impossible.
        let london = at(0, 51.5142, -0.0931, 10.0);
        let changchun = at(600_000, 43.88, 125.3228, 10.0);
        let speed = travel_speed_kmh(&london, &changchun);
        assert!(speed > 40_000.0, "{speed}");
        // The same trip in 12 hours is a plausible flight.
        let later = at(12 * 3_600_000, 43.88, 125.3228, 10.0);
        assert!(travel_speed_kmh(&london, &later) < 1_000.0);
        // London then Boxford (about 90 km) within the radii: speed 0 even at once.
        let boxford = at(0, 51.75, -1.25, 100.0);
        assert_eq!(travel_speed_kmh(&london, &boxford), 0.0);
        // Distance in no time is infinite.
        assert!(travel_speed_kmh(&london, &at(0, 43.88, 125.3228, 0.0)).is_infinite());
    }
}
