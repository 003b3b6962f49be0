//! GeoIP (MaxMind DB) country policies and impossible-travel detection.
