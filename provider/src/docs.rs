//! Registry-style docs generated from the schemas (filled in below).
