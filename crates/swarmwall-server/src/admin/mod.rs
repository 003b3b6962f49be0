//! Admin listener: JSON API, dashboard, `/metrics`, OpenAPI description.
