//! The JSON body of a `/prov` call.

use crate::plan::WtlCall;

/// The JSON body of `POST /prov` for one planned call: `imsi`, then for `insert` and `update`
/// the full state (`subscriber_status`, `cs_profile`, `eps_profile`, `msisdn`), then `action`
/// (members in the order the reference sends them). `delete` carries only the IMSI and the action.
#[derive(serde::Serialize)]
struct ProvBody<'a> {
    imsi: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    state: Option<StateBody<'a>>,
    action: &'static str,
}

#[derive(serde::Serialize)]
struct StateBody<'a> {
    subscriber_status: &'static str,
    cs_profile: &'a str,
    eps_profile: &'a str,
    msisdn: &'a [String],
}

pub(crate) fn prov_body(call: &WtlCall) -> Vec<u8> {
    let body = ProvBody {
        imsi: call.imsi.as_str(),
        state: call.state.as_ref().map(|s| StateBody {
            subscriber_status: s.status.as_str(),
            cs_profile: s.cs_profile.as_str(),
            eps_profile: s.eps_profile.as_str(),
            msisdn: &s.msisdn,
        }),
        action: call.action.as_str(),
    };
    // Serialising strings into a buffer cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}
