//! End-to-end tests: every test runs the real binaries as root on the real kernel.

mod callers;
