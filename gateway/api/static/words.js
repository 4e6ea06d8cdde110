// The gateway's words for tasks that the page acts on. They are copies, kept together so that one look finds them:
// statuses and the automation prefix are in gateway/tasks.py, who answers which origin's questions in
// gateway/policy/confirmations.py (ANSWER_CHANNELS).

export const LIVE = new Set(["queued", "running"]);
// Origins whose confirmations this page may answer (the gateway refuses the others: they have their own channel).
export const ANSWERED_HERE = new Set(["api", "voice", "web"]);
// Origins of commands a person gave, whose solution the page offers to save as a skill.
export const SAVABLE = new Set(["api", "voice"]);
export const AUTOMATION = "automation:"; // the origin's prefix of an automation's runs
