//! What an EC2 call can fail with, sorted by what the provider does about it
//! (retry, try another instance type, explain a missing permission, give up).
//!
//! Kept beside the AWS code rather than in the crate's `error.rs` because it
//! exists only with the `aws` feature; it travels as the `#[source]` of
//! [`ProvisionError`](crate::ProvisionError) and
//! [`TeardownError`](crate::TeardownError).

/// A failed EC2 API call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Ec2Error {
    /// The credentials lack an IAM permission.
    #[error("not permitted to call `ec2:{action}` (`{code}`): {message}")]
    Unauthorized {
        /// The EC2 action, e.g. `RunInstances`.
        action: String,
        /// EC2's error code.
        code: String,
        /// EC2's message (it may hold an encoded authorization message).
        message: String,
    },
    /// Too many requests; retried with backoff before this is returned.
    #[error("`ec2:{action}` was throttled (`{code}`): {message}")]
    Throttled {
        /// The EC2 action.
        action: String,
        /// EC2's error code.
        code: String,
        /// EC2's message.
        message: String,
    },
    /// No capacity (or quota) for this instance type and market right now.
    #[error("no capacity for `ec2:{action}` (`{code}`): {message}")]
    Capacity {
        /// The EC2 action.
        action: String,
        /// EC2's error code.
        code: String,
        /// EC2's message.
        message: String,
    },
    /// A server-side failure that may pass; retried before this is returned.
    #[error("`ec2:{action}` failed on EC2's side (`{code}`): {message}")]
    Transient {
        /// The EC2 action.
        action: String,
        /// EC2's error code, or the HTTP status.
        code: String,
        /// EC2's message.
        message: String,
    },
    /// Any other error EC2 answered with.
    #[error("`ec2:{action}` failed (`{code}`): {message}")]
    Service {
        /// The EC2 action.
        action: String,
        /// EC2's error code.
        code: String,
        /// EC2's message.
        message: String,
    },
    /// The request got no answer (network, timeout, credentials that could
    /// not be loaded).
    #[error("`ec2:{action}` got no answer")]
    Transport {
        /// The EC2 action.
        action: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request could not be made (credentials that cannot be loaded, an
    /// invalid request); retrying would not help.
    #[error("`ec2:{action}` could not be sent")]
    Request {
        /// The EC2 action.
        action: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// EC2 answered without something it always sends.
    #[error("`ec2:{action}` answered without `{field}`")]
    MissingField {
        /// The EC2 action.
        action: String,
        /// The missing field.
        field: String,
    },
}

/// A step of provisioning or teardown that failed; the `source` of the
/// crate's errors for the `aws` provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AwsError {
    /// An EC2 call failed.
    #[error(transparent)]
    Api(#[from] Ec2Error),
    /// No instance type in the list could be launched in any allowed market.
    #[error("no capacity: tried {}", attempts.join(", "))]
    NoCapacity {
        /// `type (market): code`, one per attempt.
        attempts: Vec<String>,
        /// The last refusal, if EC2 refused at all (spot instances can also
        /// be taken back while starting).
        #[source]
        last: Option<Box<Ec2Error>>,
    },
    /// An instant fleet launched fewer instances than the run has machines,
    /// and none for this one.
    #[error(
        "EC2 launched {launched} of the {asked} instances asked for ({})",
        if refusals.is_empty() { "it gave no reason".to_owned() } else { refusals.join("; ") }
    )]
    Unfulfilled {
        /// Instances asked for.
        asked: usize,
        /// Instances launched.
        launched: usize,
        /// EC2's reasons, one per override and market that fell short:
        /// `m6i.large (spot): \`InsufficientInstanceCapacity\`: message`.
        refusals: Vec<String>,
    },
    /// An instance did not reach the wanted state in time.
    #[error("instance `{instance}` is still `{state}` after {waited_secs} s")]
    Timeout {
        /// Instance id.
        instance: String,
        /// Its last state.
        state: String,
        /// How long was waited.
        waited_secs: u64,
    },
    /// An instance ended while it was starting (spot capacity taken back,
    /// a broken image).
    #[error("instance `{instance}` went to `{state}` while starting")]
    Ended {
        /// Instance id.
        instance: String,
        /// Its state.
        state: String,
    },
    /// The instance is no longer running: terminated, shutting down,
    /// stopped, or no longer known to EC2. There is nothing to reset.
    #[error("instance `{instance}` is no longer running ({})", gone_detail(state.as_deref(), reason.as_deref()))]
    Gone {
        /// Instance id.
        instance: String,
        /// Its state; `None` when EC2 no longer knows the instance.
        state: Option<String>,
        /// Why, as EC2 says (`StateReason`), when it says.
        reason: Option<String>,
    },
    /// The instance does not carry this machine's tags: it is not touched.
    #[error("instance `{instance}` is not tagged as machine `{machine}` of run `{run}`")]
    NotOurs {
        /// Instance id.
        instance: String,
        /// The run the machine belongs to.
        run: String,
        /// The machine's name.
        machine: String,
    },
    /// No image matches the selector.
    #[error("no available image matches {selector}")]
    NoImage {
        /// The selector, described.
        selector: String,
    },
    /// A local file or directory could not be made or removed.
    #[error("cannot {what} `{path}`")]
    Local {
        /// What was being done.
        what: String,
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `ssh-keygen` failed.
    #[error("`ssh-keygen` failed: {message}")]
    KeyGen {
        /// Its stderr or why it could not start.
        message: String,
    },
    /// The console shows two different host keys of one type: someone may
    /// be in the middle, so no key is trusted.
    #[error("the console of `{instance}` shows conflicting host keys")]
    ConflictingHostKeys {
        /// Instance id.
        instance: String,
    },
    /// The instance showed no host key in time, so it cannot be connected
    /// to safely.
    #[error(
        "`{instance}` showed no SSH host key within {waited_secs} s: none on its console \
         (cloud-init's `BEGIN SSH HOST KEY KEYS` block) nor in a `btrfsqa:host-key` tag{}; \
         it is never connected to without one (raise `host-key-wait` for a slow image)",
        last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    NoHostKey {
        /// Instance id.
        instance: String,
        /// How long provisioning waited.
        waited_secs: u64,
        /// The last failure to read the console or the tags, if any.
        last: Option<Box<Ec2Error>>,
    },
}

fn gone_detail(state: Option<&str>, reason: Option<&str>) -> String {
    match (state, reason) {
        (None, _) => "EC2 no longer knows it".to_owned(),
        (Some(state), None) => format!("`{state}`"),
        (Some(state), Some(reason)) => format!("`{state}`: {reason}"),
    }
}

/// Codes EC2 uses for throttling.
const THROTTLING: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "EC2ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "BandwidthLimitExceeded",
    "PriorRequestNotComplete",
    "SlowDown",
];

/// Codes that mean "not this instance type or market now": the provider
/// moves on to the next type, then to on-demand.
const CAPACITY: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
    // The type is not offered in this availability zone.
    "Unsupported",
];

const TRANSIENT: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

const UNAUTHORIZED: &[&str] = &[
    "UnauthorizedOperation",
    "AccessDenied",
    "AccessDeniedException",
    "OptInRequired",
];

impl Ec2Error {
    /// Sorts an error answer from EC2 by its code (and HTTP status when the
    /// code is not known).
    pub fn from_code(action: &str, code: &str, message: &str, status: Option<u16>) -> Self {
        let (action, code, message) = (action.to_owned(), code.to_owned(), message.to_owned());
        let code_in = |list: &[&str]| list.contains(&code.as_str());
        if code_in(UNAUTHORIZED) {
            Ec2Error::Unauthorized {
                action,
                code,
                message,
            }
        } else if code_in(THROTTLING) || status == Some(429) {
            Ec2Error::Throttled {
                action,
                code,
                message,
            }
        } else if code_in(CAPACITY) {
            Ec2Error::Capacity {
                action,
                code,
                message,
            }
        } else if code_in(TRANSIENT) || status.is_some_and(|status| status >= 500) {
            Ec2Error::Transient {
                action,
                code,
                message,
            }
        } else {
            Ec2Error::Service {
                action,
                code,
                message,
            }
        }
    }

    /// The EC2 action that failed.
    pub fn action(&self) -> &str {
        match self {
            Ec2Error::Unauthorized { action, .. }
            | Ec2Error::Throttled { action, .. }
            | Ec2Error::Capacity { action, .. }
            | Ec2Error::Transient { action, .. }
            | Ec2Error::Service { action, .. }
            | Ec2Error::Transport { action, .. }
            | Ec2Error::Request { action, .. }
            | Ec2Error::MissingField { action, .. } => action,
        }
    }

    /// EC2's error code, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Ec2Error::Unauthorized { code, .. }
            | Ec2Error::Throttled { code, .. }
            | Ec2Error::Capacity { code, .. }
            | Ec2Error::Transient { code, .. }
            | Ec2Error::Service { code, .. } => Some(code),
            Ec2Error::Transport { .. }
            | Ec2Error::Request { .. }
            | Ec2Error::MissingField { .. } => None,
        }
    }

    /// Worth trying again after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Ec2Error::Throttled { .. } | Ec2Error::Transient { .. } | Ec2Error::Transport { .. }
        )
    }

    /// No capacity for this instance type or market.
    pub fn is_capacity(&self) -> bool {
        matches!(self, Ec2Error::Capacity { .. })
    }

    /// The resource does not exist (any more): for deletions, the goal.
    pub fn is_not_found(&self) -> bool {
        self.code().is_some_and(|code| {
            code.ends_with("NotFound")
                // `InvalidLaunchTemplateName.NotFoundException`
                || code.ends_with("NotFoundException")
                // DeleteFleets' own code for a fleet it does not know.
                || code == "fleetIdDoesNotExist"
        })
    }

    /// EC2 answered with exactly this code.
    pub fn has_code(&self, wanted: &str) -> bool {
        self.code() == Some(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_by_what_to_do() {
        let sort = |code| Ec2Error::from_code("RunInstances", code, "msg", Some(400));
        assert!(matches!(
            sort("UnauthorizedOperation"),
            Ec2Error::Unauthorized { .. }
        ));
        assert!(sort("RequestLimitExceeded").is_retryable());
        assert!(sort("InsufficientInstanceCapacity").is_capacity());
        assert!(sort("SpotMaxPriceTooLow").is_capacity());
        assert!(!sort("InsufficientInstanceCapacity").is_retryable());
        assert!(sort("InvalidGroup.NotFound").is_not_found());
        assert!(sort("InvalidKeyPair.NotFound").is_not_found());
        assert!(matches!(
            sort("InvalidParameterValue"),
            Ec2Error::Service { .. }
        ));
        assert!(!sort("InvalidParameterValue").is_retryable());
        assert!(Ec2Error::from_code("DescribeImages", "Weird", "m", Some(503)).is_retryable());
        assert!(Ec2Error::from_code("DescribeImages", "Weird", "m", Some(429)).is_retryable());
    }

    #[test]
    fn a_missing_permission_names_the_action() {
        let error = Ec2Error::from_code(
            "RunInstances",
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
            Some(403),
        );
        assert_eq!(
            error.to_string(),
            "not permitted to call `ec2:RunInstances` (`UnauthorizedOperation`): \
             You are not authorized to perform this operation."
        );
    }
}
