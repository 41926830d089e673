//! `GitHubForge` against the mock forge: pull-request comments, permissions, retries and error detail.

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use novacron_reconcile::remediation::{CommitStatus, Forge, ForgeError, GitHubForge, Permission};
use support::MockForge;
use support::forge::{BOT_LOGIN, REPO};

fn comment_posts(forge: &MockForge, number: u64) -> usize {
    let path = format!("/repos/{REPO}/issues/{number}/comments");
    forge.requests().iter().filter(|r| r.method == "POST" && r.path == path).count()
}

#[tokio::test]
async fn comments_permissions_retries_and_errors_against_a_github_shaped_forge() {
    let started = Instant::now();
    let mock = MockForge::start().await;
    let forge = mock.forge().with_retry(3, Duration::from_millis(10));

    // Create, then list across two pages of 100.
    let ours = forge.create_pr_comment(7, "<!-- novacron -->\nplan: 1 change").await.expect("created");
    assert_eq!(ours.user.as_deref(), Some(BOT_LOGIN));
    assert!(ours.url.as_deref().is_some_and(|u| u.ends_with(&format!("/pull/7#issuecomment-{}", ours.id))), "{ours:?}");
    let humans: Vec<u64> = (0..104).map(|i| mock.add_comment(7, "alice", &format!("comment {i}"))).collect();
    mock.add_comment(8, "alice", "another pull request");
    let listed = forge.list_pr_comments(7).await.expect("listed");
    assert_eq!(listed.len(), 105);
    assert_eq!(listed[0], ours);
    assert_eq!(listed.iter().skip(1).map(|c| c.id).collect::<Vec<_>>(), humans);
    assert_eq!(listed[104].user.as_deref(), Some("alice"));
    let pages: Vec<_> = mock.requests().into_iter().filter(|r| r.method == "GET").map(|r| (r.query["per_page"].clone(), r.query["page"].clone())).collect();
    assert_eq!(pages, [("100".to_string(), "1".to_string()), ("100".to_string(), "2".to_string())]);
    assert!(forge.list_pr_comments(99).await.expect("no comments").is_empty());

    // Update in place; someone else's comment is refused; a deleted one is a 404.
    let updated = forge.update_comment(ours.id, "<!-- novacron -->\nplan: 2 changes").await.expect("updated");
    assert_eq!((updated.id, updated.body.as_str()), (ours.id, "<!-- novacron -->\nplan: 2 changes"));
    assert_eq!(mock.comments(7)[0], (ours.id, BOT_LOGIN.to_string(), "<!-- novacron -->\nplan: 2 changes".to_string()));
    let theirs = forge.update_comment(humans[0], "edited").await.expect_err("not ours");
    assert_eq!(theirs.status(), Some(403), "{theirs}");
    mock.delete_comment(ours.id);
    let gone = forge.update_comment(ours.id, "again").await.expect_err("deleted");
    assert!(matches!(gone, ForgeError::Status { status: 404, .. }), "{gone}");
    let replacement = forge.create_pr_comment(7, "<!-- novacron -->\nplan: 2 changes").await.expect("created anew");
    assert!(replacement.id > humans[103], "ids only grow");

    // Permissions: the role, the legacy word folded, unknown users.
    for (login, role) in [("alice", "write"), ("bob", "read"), ("carol", "maintain"), ("dave", "none"), ("renovate[bot]", "triage")] {
        mock.set_permission(login, role);
    }
    let mut seen = Vec::new();
    for login in ["alice", "bob", "carol", "dave", "renovate[bot]", "mallory", ""] {
        seen.push(forge.collaborator_permission(login).await.unwrap_or_else(|e| panic!("{login}: {e}")));
    }
    use Permission as P;
    assert_eq!(seen, [P::Write, P::Read, P::Maintain, P::None, P::Triage, P::None, P::None]);
    assert_eq!(seen.iter().map(|p| p.can_write()).collect::<Vec<_>>(), [true, false, true, false, false, false, false]);

    // A 502 is retried for reads and edits; a comment is created at most once.
    let before = mock.requests().len();
    mock.fail_next(1, 502);
    assert_eq!(forge.list_pr_comments(7).await.expect("retried").len(), 105);
    assert_eq!(mock.requests().len() - before, 3, "one failed and two good pages");
    mock.fail_next(1, 502);
    assert_eq!(forge.update_comment(replacement.id, "plan: 3 changes").await.expect("retried").body, "plan: 3 changes");
    let (posts, comments) = (comment_posts(&mock, 7), mock.comments(7).len());
    mock.fail_next(1, 502);
    let refused = forge.create_pr_comment(7, "plan: 4 changes").await.expect_err("not repeated");
    assert_eq!(refused.status(), Some(502), "{refused}");
    assert_eq!((comment_posts(&mock, 7), mock.comments(7).len()), (posts + 1, comments), "sent once, nothing duplicated");
    mock.fail_next(1, 503);
    let status = CommitStatus { state: "pending", context: "novacron/plan".into(), description: "planning".into() };
    forge.set_commit_status("abc123", &status).await.expect("a status is retried");
    assert_eq!(mock.statuses("abc123"), [("pending".to_string(), "novacron/plan".to_string(), "planning".to_string())]);

    // A persistent outage ends after the attempts, with the forge's words.
    mock.fail_next(3, 500);
    let down = forge.collaborator_permission("alice").await.expect_err("down");
    assert_eq!(down.to_string(), format!("forge GET /repos/{REPO}/collaborators/alice/permission: HTTP 500: Server Error"));
    assert_eq!(forge.collaborator_permission("alice").await.expect("back"), P::Write);

    // Refusals carry GitHub's `errors` detail, never the token.
    let too_long = forge.create_pr_comment(7, &"x".repeat(65537)).await.expect_err("too long");
    assert_eq!(too_long.status(), Some(422));
    assert!(too_long.to_string().ends_with("HTTP 422: Validation Failed (body: custom: body is too long (maximum is 65536 characters))"), "{too_long}");
    let long = CommitStatus { state: "failure", context: "novacron/plan".into(), description: "é".repeat(200) };
    forge.set_commit_status("abc123", &long).await.expect("the description is cut to what GitHub takes");
    assert_eq!(mock.statuses("abc123")[1].2.chars().count(), 140);
    mock.fail_next(1, 422);
    let injected = forge.update_comment(replacement.id, "plan").await.expect_err("refused");
    assert!(injected.to_string().ends_with("Validation Failed (custom: refused by MockForge::fail_next)"), "{injected}");
    let stranger = GitHubForge::new(&mock.url, REPO, "ghp_not-the-token").expect("forge").with_retry(3, Duration::from_millis(10));
    let bad = stranger.create_pr_comment(7, "hi").await.expect_err("bad credentials");
    assert_eq!((bad.status(), bad.to_string().contains("ghp_not-the-token")), (Some(401), false), "{bad}");
    assert!(bad.to_string().ends_with("Bad credentials"), "{bad}");

    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}
