//! The layering of one key's value: unset in a table (fall through), invalid (already
//! reported), or set and remembering the key it came from, so that a cross-key check can name
//! the key the user has to change.

use std::fmt;

/// Which layer a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Builtin,
    Defaults(String),
    Org(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin => f.write_str("built-in default"),
            Self::Defaults(path) | Self::Org(path) => write!(f, "from {path}"),
        }
    }
}

/// A value and the key it came from.
#[derive(Debug, Clone)]
pub(crate) struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// One table's value for one key.
#[derive(Debug, Clone, Default)]
pub(crate) enum Slot<T> {
    /// Not in this table: fall through to the next layer.
    #[default]
    Unset,
    /// Present but unusable; already reported.
    Invalid,
    Set(Sourced<T>),
}

impl<T: Clone> Slot<T> {
    /// This layer's value, else `lower`'s, else `builtin`. `None` means an invalid value was
    /// chosen (already reported), so checks depending on it are skipped.
    pub(super) fn over(&self, lower: &Slot<T>, builtin: Option<T>) -> Option<Option<Sourced<T>>> {
        match (self, lower) {
            (Slot::Set(v), _) | (Slot::Unset, Slot::Set(v)) => Some(Some(v.clone())),
            (Slot::Invalid, _) | (Slot::Unset, Slot::Invalid) => None,
            (Slot::Unset, Slot::Unset) => Some(builtin.map(|value| Sourced {
                value,
                source: Source::Builtin,
            })),
        }
    }

    /// Like [`Slot::over`] for keys that always have a built-in default.
    pub(super) fn over_or(&self, lower: &Slot<T>, builtin: T) -> Option<Sourced<T>> {
        self.over(lower, Some(builtin)).flatten()
    }
}
