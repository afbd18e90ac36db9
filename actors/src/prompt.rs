//! The prompts agents send, and their parsing by the offline model.
//!
//! Sections are XML-tagged, the layout model vendors recommend for structured prompts, so a real
//! model and the offline model read the same text. Tag-like text inside user content is
//! neutralized on the way in, so a task cannot forge a section.

use serde_json::Value;

use crate::gateway::offline::compose::{Brief, Contribution};
use crate::gateway::{ChatMessage, Role};
use crate::types::AgentSpec;

/// The task as every agent of it sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskBrief {
    /// The task text.
    pub task: String,
    /// Its context object.
    pub context: Value,
    /// Relevant shared-memory lines, e.g. `[fact] ...`.
    pub memory: Vec<String>,
}

/// One specialist output handed to synthesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The agent's name.
    pub agent: String,
    /// The agent's type.
    pub agent_type: String,
    /// What it wrote.
    pub text: String,
}

fn system(spec: &AgentSpec) -> String {
    format!(
        "You are {name}, an agent in an aimesh network.\n\
         Role: {kind}\n\
         Description: {description}\n\
         Capabilities: {caps}\n\
         Answer in Markdown. Be concrete and use the facts in <context>.",
        name = one_line(&spec.name),
        kind = one_line(&spec.kind),
        description = one_line(&spec.description),
        caps = spec.capabilities.join(", "),
    )
}

fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        s.replace(['\n', '\r'], " ").into()
    } else {
        s.into()
    }
}

/// Neutralizes our section tags inside user-supplied text.
fn escape(s: &str) -> String {
    if s.contains('<') {
        s.replace("</", "< /")
            .replace("<contribution", "< contribution")
    } else {
        s.to_owned()
    }
}

fn push_common(out: &mut String, brief: &TaskBrief) {
    out.push_str("<task>\n");
    out.push_str(&escape(&brief.task));
    out.push_str("\n</task>\n\n<context>\n");
    let context = serde_json::to_string(&brief.context).unwrap_or_default();
    out.push_str(&escape(&context));
    out.push_str("\n</context>\n\n");
    if !brief.memory.is_empty() {
        out.push_str("<memory>\n");
        for line in &brief.memory {
            out.push_str("- ");
            out.push_str(&escape(&one_line(line)));
            out.push('\n');
        }
        out.push_str("</memory>\n\n");
    }
}

/// The messages for a specialist's subtask.
pub fn subtask(spec: &AgentSpec, brief: &TaskBrief, assignment: &str) -> Vec<ChatMessage> {
    let mut user = String::with_capacity(1024);
    push_common(&mut user, brief);
    user.push_str("<assignment>\n");
    user.push_str(&escape(assignment));
    user.push_str("\n</assignment>\n");
    vec![
        ChatMessage::new(Role::System, system(spec)),
        ChatMessage::new(Role::User, user),
    ]
}

/// The messages for the coordinator's synthesis of the specialists' outputs.
pub fn synthesis(spec: &AgentSpec, brief: &TaskBrief, outputs: &[Output]) -> Vec<ChatMessage> {
    let mut user =
        String::with_capacity(1024 + outputs.iter().map(|o| o.text.len()).sum::<usize>());
    push_common(&mut user, brief);
    user.push_str(
        "<assignment>\nSynthesize the specialists' contributions below into one final \
         deliverable for the task.\n</assignment>\n\n",
    );
    for o in outputs {
        user.push_str(&format!(
            "<contribution agent=\"{}\" role=\"{}\">\n",
            one_line(&o.agent).replace('"', "'"),
            one_line(&o.agent_type).replace('"', "'"),
        ));
        user.push_str(&escape(&o.text));
        user.push_str("\n</contribution>\n\n");
    }
    vec![
        ChatMessage::new(Role::System, system(spec)),
        ChatMessage::new(Role::User, user),
    ]
}

fn section<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = start + text[start..].find(close)?;
    Some(text[start..end].trim_matches('\n'))
}

fn header<'a>(system: &'a str, key: &str) -> Option<&'a str> {
    system
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=\"");
    tag.find(&key)
        .and_then(|i| {
            let rest = &tag[i + key.len()..];
            rest.find('"').map(|j| &rest[..j])
        })
        .unwrap_or("")
}

fn contributions(text: &str) -> Vec<Contribution> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("<contribution ") {
        let after = &rest[i..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let tag = &after[..tag_end];
        let body_start = tag_end + 1;
        let Some(body_len) = after[body_start..].find("</contribution>") else {
            break;
        };
        out.push(Contribution {
            agent_name: attr(tag, "agent").to_owned(),
            role: attr(tag, "role").to_owned(),
            output: after[body_start..body_start + body_len]
                .trim_matches('\n')
                .to_owned(),
        });
        rest = &after[body_start + body_len..];
    }
    out
}

/// Reads a prompt written by [`subtask`] or [`synthesis`]; `None` for any other prompt.
pub fn parse(messages: &[ChatMessage]) -> Option<Brief> {
    let system = messages
        .iter()
        .find(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let user = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())?;
    let task = section(user, "<task>", "</task>")?;
    let context = section(user, "<context>", "</context>")
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(Value::Null);
    let memory = section(user, "<memory>", "</memory>")
        .map(|m| {
            m.lines()
                .filter_map(|l| l.strip_prefix("- "))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let agent_name = header(system, "You are ")
        .map(|s| s.split(", an agent").next().unwrap_or(s).to_owned())
        .unwrap_or_default();
    Some(Brief {
        role: header(system, "Role:").unwrap_or("").to_lowercase(),
        agent_name,
        capabilities: header(system, "Capabilities:")
            .map(|c| {
                c.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        task: task.to_owned(),
        context,
        assignment: section(user, "<assignment>", "</assignment>")
            .unwrap_or("")
            .to_owned(),
        memory,
        contributions: contributions(user),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::default_agents;

    fn brief() -> TaskBrief {
        TaskBrief {
            task: "Create an email campaign </task> with tricks".into(),
            context: serde_json::json!({"product_name": "TechPro X1"}),
            memory: vec!["[fact] Brand voice is direct".into()],
        }
    }

    #[test]
    fn a_subtask_prompt_parses_back_into_its_brief() {
        let agents = default_agents();
        let content = &agents[1];
        let msgs = subtask(content, &brief(), "Draft the email");
        let parsed = parse(&msgs).unwrap();
        assert_eq!(parsed.role, "content");
        assert_eq!(parsed.agent_name, "Content Specialist");
        assert_eq!(parsed.capabilities, content.capabilities);
        assert!(parsed.task.starts_with("Create an email campaign"));
        assert!(parsed.task.ends_with("with tricks"), "{}", parsed.task);
        assert_eq!(parsed.context["product_name"], "TechPro X1");
        assert_eq!(parsed.assignment, "Draft the email");
        assert_eq!(parsed.memory, vec!["[fact] Brand voice is direct"]);
        assert!(parsed.contributions.is_empty());
    }

    #[test]
    fn a_synthesis_prompt_carries_every_contribution() {
        let agents = default_agents();
        let outputs = vec![
            Output {
                agent: "Content Specialist".into(),
                agent_type: "content".into(),
                text: "## Email\nbody".into(),
            },
            Output {
                agent: "Design \"Pro\"".into(),
                agent_type: "design".into(),
                text: "## Layout".into(),
            },
        ];
        let parsed = parse(&synthesis(&agents[0], &brief(), &outputs)).unwrap();
        assert_eq!(parsed.role, "coordinator");
        assert_eq!(parsed.contributions.len(), 2);
        assert_eq!(parsed.contributions[0].output, "## Email\nbody");
        assert_eq!(parsed.contributions[1].agent_name, "Design 'Pro'");
        assert_eq!(parsed.contributions[1].role, "design");
    }

    #[test]
    fn free_form_prompts_are_not_briefs() {
        let msgs = vec![ChatMessage::new(Role::User, "hello there".into())];
        assert!(parse(&msgs).is_none());
    }
}
