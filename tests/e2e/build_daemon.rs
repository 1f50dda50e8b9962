//! `docker build` through capsad: being written.
