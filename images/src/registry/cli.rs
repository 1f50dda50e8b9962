//! One call per CLI command, for `capsa pull/push/login/logout`: parse the strings, choose how
//! to show progress (bars on a terminal, lines otherwise, nothing with `-q`), run.

use std::io::IsTerminal;

use super::error::Result;
use super::platform::Platform;
use super::progress::{Bars, Lines, Progress, Quiet};
use super::pull::{PullOptions, PullReport, pull};
use super::push::{PushOptions, PushReport, push};
use super::reference::ImageRef;
use super::{RegistryOptions, login, logout};
use crate::store::Store;

fn progress(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Quiet)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(Lines)
    }
}

/// `capsa pull [--platform P] [-q] REF`: returns what was pulled (`report.id` is the image).
pub fn pull_command(
    store: &Store,
    reference: &str,
    platform: Option<&str>,
    quiet: bool,
    registry: &RegistryOptions,
) -> Result<PullReport> {
    let reference = ImageRef::parse(reference)?;
    let options = PullOptions {
        platform: platform.map(Platform::parse).transpose()?,
        registry: registry.clone(),
        ..PullOptions::default()
    };
    pull(store, &reference, &options, progress(quiet).as_ref())
}

/// `capsa push [-q] IMAGE [DEST]`: pushes the stored image `image` to `dest` (default: the
/// image's own name, which must then be a full reference).
pub fn push_command(
    store: &Store,
    image: &str,
    dest: Option<&str>,
    quiet: bool,
    registry: &RegistryOptions,
) -> Result<PushReport> {
    let dest = ImageRef::parse(dest.unwrap_or(image))?;
    let options = PushOptions {
        registry: registry.clone(),
        ..PushOptions::default()
    };
    push(store, image, &dest, &options, progress(quiet).as_ref())
}

/// `capsa login -u USER -p PASS REGISTRY`.
pub fn login_command(
    store: &Store,
    registry: &str,
    username: &str,
    password: &str,
    options: &RegistryOptions,
) -> Result<()> {
    login(store, registry, username, password, options)
}

/// `capsa logout REGISTRY`: whether credentials were stored.
pub fn logout_command(store: &Store, registry: &str) -> Result<bool> {
    logout(store, registry)
}
