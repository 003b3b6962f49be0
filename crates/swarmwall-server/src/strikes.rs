//! Graduated response: strikes per account (or client address), incidents per burst, suspensions.
