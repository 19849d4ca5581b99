//! What a command-line flag is, and the values the flags were given: the types the settings
//! table (`table.rs`) declares its flags with and the parser (`cli.rs`) fills in.

/// A flag: upstream's short and long names and usage text, and the field of [`Flags`] it sets
/// (whose type says whether it takes a value). The settings' flags are in the table
/// (`table.rs`); `-v` is here, as it is not a setting.
pub(crate) struct Flag {
    pub(crate) short: &'static str,
    pub(crate) long: &'static str,
    pub(crate) usage: &'static str,
    pub(crate) slot: for<'a> fn(&'a mut Flags) -> Slot<'a>,
}

impl Flag {
    /// How errors and the startup lines name it: `-b/--bind`.
    pub(crate) fn name(&self) -> String {
        format!("-{}/--{}", self.short, self.long)
    }
}

/// The field of [`Flags`] a flag sets.
pub(crate) enum Slot<'a> {
    Text(&'a mut Option<String>),
    Int(&'a mut Option<i64>),
    /// Set bare (`-o`) or with `=value`, never with a separate value.
    Bool(&'a mut Option<bool>),
    /// A bare switch such as `-v`.
    Switch(&'a mut bool),
}

impl Slot<'_> {
    pub(super) fn takes_value(&self) -> bool {
        matches!(self, Slot::Text(_) | Slot::Int(_))
    }

    /// Stores a value, or `None` when Go's `flag` package would reject it.
    pub(super) fn set(self, value: String) -> Option<()> {
        match self {
            Slot::Text(slot) => *slot = Some(value),
            Slot::Int(slot) => *slot = Some(value.parse().ok()?),
            Slot::Bool(slot) => *slot = Some(parse_go_bool(&value)?),
            Slot::Switch(slot) => *slot = parse_go_bool(&value)?,
        }
        Some(())
    }

    /// The value given, as text; `None` when the flag was not given.
    pub(crate) fn text(self) -> Option<String> {
        match self {
            Slot::Text(slot) => slot.clone(),
            Slot::Int(slot) => slot.map(|n| n.to_string()),
            Slot::Bool(slot) => slot.map(|b| b.to_string()),
            Slot::Switch(slot) => slot.then(|| "true".to_owned()),
        }
    }
}

pub(crate) const VERSION: Flag = Flag {
    short: "v",
    long: "version",
    usage: "Show AWS X-Ray daemon version.",
    slot: |f| Slot::Switch(&mut f.version),
};

/// The values given on the command line; `None` where a flag was not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub(crate) resource_arn: Option<String>,
    pub(crate) local_mode: Option<bool>,
    pub(crate) buffer_memory: Option<i64>,
    pub(crate) region: Option<String>,
    pub(crate) bind: Option<String>,
    pub(crate) bind_tcp: Option<String>,
    pub(crate) role_arn: Option<String>,
    pub(crate) config: Option<String>,
    pub(crate) log_file: Option<String>,
    pub(crate) log_level: Option<String>,
    pub(crate) proxy_address: Option<String>,
    pub version: bool,
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
