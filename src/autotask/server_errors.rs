//! How Autotask's 5xx replies are read. Autotask answers its own validation errors with HTTP 500,
//! so the status alone cannot say whether sending again could help: the body decides (the rule is
//! [`classify_server_error`], documented in the README's "Autotask errors").

use super::wire;

/// How a 5xx reply is read, by its body (Autotask answers its validation errors with HTTP 500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ServerError {
    /// Autotask's own words about the request (a product that does not exist, a contract that
    /// takes no charges, a duplicate, an invalid integration code): sending it again changes
    /// nothing, a person must fix something first. Permanent.
    Validation(Vec<String>),
    /// The server's trouble, not the request's: retried (and for a create, its outcome unknown:
    /// looked for by marker after `autotask.settle_secs`).
    Transient,
}

/// Words in an error message that say the server failed, not the request (matched in lower case).
const SERVER_FAULT_WORDS: [&str; 10] = [
    "unexpected error",
    "error id",
    "timeout",
    "timed out",
    "deadlock",
    "try again",
    "temporarily",
    "unavailable",
    "internal server error",
    "could not connect",
];

/// The rule for a 5xx reply. It is a validation error (permanent) only when the body is
/// Autotask's JSON `{"errors": [...]}` with at least one message and none of its messages speaks
/// of a server fault (`SERVER_FAULT_WORDS`: "An unexpected error has occurred … Error ID: 54634",
/// a timeout, a deadlock, "try again", "temporarily unavailable"). Everything else is transient:
/// an HTML error page (a proxy or the load balancer), an empty body, plain text, JSON in another
/// shape (ASP.NET's `{"Message": …}`), an empty `errors` list.
pub(super) fn classify_server_error(body: &str) -> ServerError {
    let words: Vec<String> = errors_of(body)
        .into_iter()
        .filter(|w| !w.trim().is_empty())
        .collect();
    let server_fault = |w: &String| {
        let w = w.to_lowercase();
        SERVER_FAULT_WORDS.iter().any(|f| w.contains(f))
    };
    if words.is_empty() || words.iter().any(server_fault) {
        ServerError::Transient
    } else {
        ServerError::Validation(words)
    }
}

pub(super) fn errors_of(body: &str) -> Vec<String> {
    serde_json::from_str::<wire::Errors>(body)
        .map(|e| e.errors)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{ServerError, classify_server_error};

    fn validation(body: &str) -> bool {
        matches!(classify_server_error(body), ServerError::Validation(_))
    }

    // Bodies from /work/shared/research/autotask/samples (public documentation and issues).
    #[test]
    fn autotasks_own_validation_words_on_a_500_are_permanent() {
        // error.create-duplicate.500.official-docs.json
        assert!(validation(
            r#"{"errors":["A ContactGroup already exists with Name [Test 1 Create of Contact Group x]. ContactGroup names must be unique."]}"#
        ));
        // error.integration-code-invalid.500.json
        assert!(validation(r#"{"errors":["IntegrationCode is invalid."]}"#));
        // error.zone-information-not-determined.500.json
        assert!(validation(
            r#"{"errors":["Zone information could not be determined"]}"#
        ));
        // The stand-in's and the fixtures' words for a charge Autotask refuses.
        assert!(validation(
            r#"{"errors":["Value for BillingCodeID (29682804) is not valid: the billing code is not a Material Cost Code."]}"#
        ));
        assert_eq!(
            classify_server_error(r#"{"errors":["Product 7 does not exist or is not active."]}"#),
            ServerError::Validation(vec!["Product 7 does not exist or is not active.".into()])
        );
    }

    #[test]
    fn a_500_that_speaks_of_a_server_fault_is_transient() {
        // error.unexpected-with-errorId.json
        assert_eq!(
            classify_server_error(
                r#"{"errors":["An unexpected error has occurred.  If the problem persists, please contact Autotask Support and reference Error ID: 54634.","If the problem persists, please contact Autotask Support and reference Error ID: 54634."],"errorId":54634}"#
            ),
            ServerError::Transient
        );
        assert_eq!(
            classify_server_error(
                r#"{"errors":["Transaction (Process ID 71) was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction."]}"#
            ),
            ServerError::Transient
        );
        assert_eq!(
            classify_server_error(r#"{"errors":["Execution Timeout Expired."]}"#),
            ServerError::Transient
        );
    }

    #[test]
    fn a_500_without_autotasks_error_words_is_transient() {
        for body in [
            "",
            "   ",
            "<!DOCTYPE html><html><head><title>500 - Internal server error.</title></head><body><h2>500 - Internal server error.</h2></body></html>",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
            "The service is unavailable.",
            // error.method-not-allowed.405.json's ASP.NET shape, on a 5xx
            r#"{"Message":"An error has occurred."}"#,
            r#"{"errors":[]}"#,
            r#"{"errors":[""]}"#,
        ] {
            assert_eq!(
                classify_server_error(body),
                ServerError::Transient,
                "{body:?}"
            );
        }
    }
}
