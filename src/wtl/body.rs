//! The JSON body of a `/prov` call.

use crate::plan::WtlCall;

/// The JSON body of `POST /prov` for one planned call: `imsi`, then for `insert` and `update`
/// the full state (`subscriber_status`, `cs_profile`, `eps_profile`, `msisdn`), then `action`
/// (members in the order the reference sends them). `delete` carries only the IMSI and the action.
/// The state members are present together or not at all (each is the call's one `Option` of
/// state, mapped); they are not a nested struct under serde's `flatten`, which writes the whole
/// body through a map.
#[derive(serde::Serialize)]
struct ProvBody<'a> {
    imsi: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriber_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cs_profile: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eps_profile: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msisdn: Option<&'a [String]>,
    action: &'static str,
}

/// Room for a body with a few numbers, so it is written without growing.
const BODY_CAPACITY: usize = 256;

pub(crate) fn prov_body(call: &WtlCall) -> Vec<u8> {
    let state = call.state.as_ref();
    let body = ProvBody {
        imsi: call.imsi.as_str(),
        subscriber_status: state.map(|s| s.status.as_str()),
        cs_profile: state.map(|s| s.cs_profile.as_str()),
        eps_profile: state.map(|s| s.eps_profile.as_str()),
        msisdn: state.map(|s| s.msisdn.as_slice()),
        action: call.action.as_str(),
    };
    let mut out = Vec::with_capacity(BODY_CAPACITY);
    // Serialising strings into a buffer cannot fail.
    match serde_json::to_writer(&mut out, &body) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}
