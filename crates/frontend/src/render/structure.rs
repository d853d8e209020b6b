//! ENVELOPE, BODY and BODYSTRUCTURE (RFC 3501 §7.4.2) from the precomputed MIME analysis.
//!
//! `mailraft_mime` computed everything at APPEND time; this module only changes representation.
//! BODY is BODYSTRUCTURE without extension data; with extension data a single part carries MD5,
//! disposition, language and location, and a multipart carries its parameters, disposition,
//! language and location (RFC 3501 §7.4.2 body-ext-1part / body-ext-mpart).

use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{IString, Vec1};
use imap_codec::imap_types::envelope::{Address, Envelope};
use mailraft_mime::{Address as MimeAddress, BodyPart, Envelope as MimeEnvelope};

use super::strings::{istring, nstring, upper};

/// Converts the stored ENVELOPE. Empty address lists become NIL and group markers keep their
/// NIL host (RFC 3501 §7.4.2), both as `mailraft_mime` recorded them.
pub fn envelope(env: &MimeEnvelope) -> Envelope<'static> {
    let list = |addrs: &[MimeAddress]| addrs.iter().map(address).collect::<Vec<_>>();
    Envelope {
        date: nstring(env.date.as_deref()),
        subject: nstring(env.subject.as_deref()),
        from: list(&env.from),
        sender: list(&env.sender),
        reply_to: list(&env.reply_to),
        to: list(&env.to),
        cc: list(&env.cc),
        bcc: list(&env.bcc),
        in_reply_to: nstring(env.in_reply_to.as_deref()),
        message_id: nstring(env.message_id.as_deref()),
    }
}

/// One address structure.
fn address(a: &MimeAddress) -> Address<'static> {
    Address {
        name: nstring(a.name.as_deref()),
        adl: nstring(a.adl.as_deref()),
        mailbox: nstring(a.mailbox.as_deref()),
        host: nstring(a.host.as_deref()),
    }
}

/// BODYSTRUCTURE (`extensible`) or BODY (not) of a MIME tree.
pub fn body_structure(part: &BodyPart, extensible: bool) -> BodyStructure<'static> {
    if part.is_multipart() {
        let bodies: Vec<BodyStructure<'static>> = part
            .children
            .iter()
            .map(|c| body_structure(c, extensible))
            .collect();
        // `mailraft_mime` guarantees at least one child; an empty multipart (corrupt record)
        // is sent as a basic part so the reply stays parseable.
        if let Ok(bodies) = Vec1::try_from(bodies) {
            return BodyStructure::Multi {
                bodies,
                subtype: upper(&part.subtype),
                extension_data: extensible.then(|| MultiPartExtensionData {
                    parameter_list: params(&part.params),
                    tail: Some(disposition_tail(part)),
                }),
            };
        }
    }
    let basic = BasicFields {
        parameter_list: params(&part.params),
        id: nstring(part.id.as_deref()),
        description: nstring(part.description.as_deref()),
        content_transfer_encoding: upper(&part.encoding),
        size: saturate(part.size),
    };
    let specific = match (&part.message, part.content_type.as_str()) {
        (Some(message), "message") if part.subtype == "rfc822" => SpecificFields::Message {
            envelope: Box::new(envelope(&message.envelope)),
            body_structure: Box::new(body_structure(&message.body, extensible)),
            number_of_lines: saturate(part.lines),
        },
        (_, "text") => SpecificFields::Text {
            subtype: upper(&part.subtype),
            number_of_lines: saturate(part.lines),
        },
        _ => SpecificFields::Basic {
            r#type: upper(non_empty(&part.content_type, "application")),
            subtype: upper(non_empty(&part.subtype, "octet-stream")),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extensible.then(|| SinglePartExtensionData {
            md5: nstring(part.md5.as_deref()),
            tail: Some(disposition_tail(part)),
        }),
    }
}

/// body-fld-dsp, body-fld-lang and body-fld-loc, always all three (RFC 3501 §7.4.2).
fn disposition_tail(part: &BodyPart) -> Disposition<'static> {
    Disposition {
        disposition: part
            .disposition
            .as_ref()
            .map(|(kind, p)| (upper(kind), params(p))),
        tail: Some(Language {
            language: part.language.iter().map(|l| istring(l.as_str())).collect(),
            tail: Some(Location {
                location: nstring(part.location.as_deref()),
                extensions: vec![],
            }),
        }),
    }
}

/// body-fld-param: names uppercased, values verbatim (a boundary or file name is case-sensitive).
fn params(p: &[(String, String)]) -> Vec<(IString<'static>, IString<'static>)> {
    p.iter()
        .map(|(name, value)| (upper(name), istring(value.as_str())))
        .collect()
}

/// `value`, or `default` when empty (a corrupt record must still give a parseable reply).
fn non_empty<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

/// Sizes and line counts are 32-bit on the wire (RFC 3501 §9 number).
fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
