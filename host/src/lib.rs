//! capsa-host: the container envelope as a library.
