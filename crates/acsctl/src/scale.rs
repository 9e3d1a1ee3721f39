//! `acsctl scale`: the request it sends and how the reply reads. Pure.

use acs_events::{ScaleMode, ScaleReply, ScaleRequest, ServiceName, SCHEMA_VERSION};

use crate::cli::ScaleTarget;

pub fn request(service: ServiceName, target: ScaleTarget) -> ScaleRequest {
    match target {
        ScaleTarget::Replicas(n) => ScaleRequest {
            v: SCHEMA_VERSION,
            service,
            replicas: Some(i64::from(n)),
            auto: false,
        },
        ScaleTarget::Auto => ScaleRequest {
            v: SCHEMA_VERSION,
            service,
            replicas: None,
            auto: true,
        },
    }
}

/// One or two lines: `web: 2 → 3 (manual)` and the brain's note.
pub fn render(req: &ScaleRequest, reply: &ScaleReply) -> String {
    let service = reply.service.as_ref().unwrap_or(&req.service);
    let count = |n: Option<u32>| n.map_or_else(|| "?".to_string(), |n| n.to_string());
    let mode = match reply.mode {
        Some(ScaleMode::Manual) => "manual",
        Some(ScaleMode::Auto) => "auto",
        None if req.auto => "auto",
        None => "manual",
    };
    let mut out = format!(
        "{service}: {} → {} ({mode})",
        count(reply.previous),
        count(reply.replicas)
    );
    if mode == "auto" {
        out.push_str(", the autoscaling policy decides from now on");
    } else {
        out.push_str(", autoscaling paused until `acsctl scale ");
        out.push_str(service.as_str());
        out.push_str(" auto`");
    }
    if let Some(note) = reply.note.as_deref().filter(|n| !n.is_empty()) {
        out.push('\n');
        out.push_str(note);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(json: &str) -> ScaleReply {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn builds_valid_requests() {
        use acs_events::Validate;
        let web = ServiceName::new("web").unwrap();
        let r = request(web.clone(), ScaleTarget::Replicas(3));
        assert_eq!(r.replicas, Some(3));
        assert!(!r.auto);
        r.validate().unwrap();
        let r = request(web, ScaleTarget::Auto);
        assert!(r.auto && r.replicas.is_none());
        r.validate().unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"v":1,"service":"web","replicas":null,"auto":true})
        );
    }

    #[test]
    fn renders_manual_and_auto() {
        let web = ServiceName::new("web").unwrap();
        let req = request(web.clone(), ScaleTarget::Replicas(3));
        let out = render(
            &req,
            &reply(
                r#"{"ok":true,"service":"web","previous":2,"replicas":3,"mode":"manual","note":"policy overridden"}"#,
            ),
        );
        assert_eq!(
            out,
            "web: 2 → 3 (manual), autoscaling paused until `acsctl scale web auto`\npolicy overridden"
        );
        let req = request(web, ScaleTarget::Auto);
        let out = render(
            &req,
            &reply(r#"{"ok":true,"previous":3,"replicas":2,"mode":"auto"}"#),
        );
        assert_eq!(
            out,
            "web: 3 → 2 (auto), the autoscaling policy decides from now on"
        );
        let out = render(&req, &reply(r#"{"ok":true}"#));
        assert!(out.starts_with("web: ? → ? (auto)"), "{out}");
    }
}
