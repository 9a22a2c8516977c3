-- The supply-chain step of a collection (repoaudit.collect.referrers): referrer facts, links, verdicts.

-- name: known_verifications
-- Which (signature manifest, subject, key) verdicts the registry's database already holds: never redone.
SELECT DISTINCT signature_digest, subject_digest, coalesce(key_fingerprint, '') FROM signature_verifications
WHERE registry = $registry;

-- name: link_referrers
-- The snapshot's links found in its own tags: cosign tags, the fallback tag's index entries, and the subject
-- field of every manifest it reaches; and the API links of earlier snapshots whose subject it still reaches
-- in that repository (the API is asked only about new digests).
INSERT INTO referrer_links (snapshot_id, registry, repository, subject_digest, referrer_digest, via)
WITH own AS (
    SELECT t.snapshot_id, t.registry, t.repository,
           'sha256:' || regexp_extract(t.tag, '^sha256-([0-9a-f]{64})\.(sig|att|sbom)$', 1) AS subject_digest,
           t.digest AS referrer_digest, 'cosign-tag' AS via
    FROM tags t
    WHERE t.snapshot_id = $snapshot AND regexp_full_match(t.tag, 'sha256-[0-9a-f]{64}\.(sig|att|sbom)')
    UNION
    SELECT t.snapshot_id, t.registry, t.repository, 'sha256:' || substr(t.tag, 8), c.child_digest, 'fallback-tag'
    FROM tags t
    JOIN manifest_children c ON c.registry = t.registry AND c.index_digest = t.digest
    WHERE t.snapshot_id = $snapshot AND regexp_full_match(t.tag, 'sha256-[0-9a-f]{64}')
    UNION
    SELECT s.snapshot_id, s.registry, s.repository, m.subject, m.digest, 'subject'
    FROM snapshot_manifests s
    JOIN manifests m ON m.registry = s.registry AND m.digest = s.digest
    WHERE s.snapshot_id = $snapshot AND m.subject IS NOT NULL
), previous AS (
    SELECT max(snapshot_id) AS snapshot_id FROM snapshots
    WHERE registry = $registry AND snapshot_id < $snapshot AND status IN ('complete', 'partial')
), carried AS (
    SELECT DISTINCT $snapshot, l.registry, l.repository, l.subject_digest, l.referrer_digest, 'api'
    FROM referrer_links l
    JOIN snapshot_manifests s ON s.snapshot_id = $snapshot AND s.registry = l.registry
                             AND s.repository = l.repository AND s.digest = l.subject_digest
    WHERE l.snapshot_id = (SELECT snapshot_id FROM previous) AND l.via = 'api'
      AND NOT EXISTS (SELECT 1 FROM referrer_links n
                      WHERE n.snapshot_id = $snapshot AND n.registry = l.registry AND n.repository = l.repository
                        AND n.subject_digest = l.subject_digest AND n.referrer_digest = l.referrer_digest)
)
SELECT * FROM own
UNION ALL
SELECT * FROM carried;
