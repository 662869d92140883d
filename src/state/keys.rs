//! Where a job's state lives in Redis: `<prefix>:job:<job>:meta`, `:lock` and the row-digest
//! buckets `:h:<generation>:<bucket>`. On a Redis Cluster the job part is a hash tag
//! (`<prefix>:job:{<job>}:…`), so every key of one job sits in one slot (its multi-key reads,
//! pipelines and scripts stay valid) while different jobs spread over the nodes.

/// The key names of every job under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    cluster: bool,
}

impl Keys {
    pub fn new(prefix: &str, cluster: bool) -> Keys {
        Keys {
            prefix: prefix.to_string(),
            cluster,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn job(&self, job: &str) -> String {
        let j = encode_job(job);
        if self.cluster {
            format!("{}:job:{{{j}}}", self.prefix)
        } else {
            format!("{}:job:{j}", self.prefix)
        }
    }

    pub fn meta(&self, job: &str) -> String {
        format!("{}:meta", self.job(job))
    }

    pub fn lock(&self, job: &str) -> String {
        format!("{}:lock", self.job(job))
    }

    pub fn bucket(&self, job: &str, generation: u64, bucket: u32) -> String {
        format!("{}:h:{generation}:{bucket}", self.job(job))
    }

    /// Every bucket key of `generation` starts with this.
    pub fn generation_prefix(&self, job: &str, generation: u64) -> String {
        format!("{}:h:{generation}:", self.job(job))
    }

    /// A `SCAN MATCH` pattern for every bucket of every generation of `job`.
    pub fn buckets_pattern(&self, job: &str) -> String {
        format!("{}:h:*", glob_escape(&self.job(job)))
    }

    /// A `SCAN MATCH` pattern for the meta key of every job.
    pub fn metas_pattern(&self) -> String {
        format!("{}:job:*:meta", glob_escape(&self.prefix))
    }

    /// The job a meta key belongs to.
    pub fn job_of_meta(&self, key: &str) -> Option<String> {
        let rest = key
            .strip_prefix(&self.prefix)?
            .strip_prefix(":job:")?
            .strip_suffix(":meta")?;
        let rest = match self.cluster {
            true => rest.strip_prefix('{')?.strip_suffix('}')?,
            false => rest,
        };
        Some(crate::percent::decode(rest))
    }
}

/// Percent-encodes `%`, `:` and braces, so one job's keys never match another job's pattern
/// and a job name never changes the hash tag.
pub fn encode_job(job: &str) -> String {
    let mut out = String::with_capacity(job.len());
    for c in job.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes glob characters for SCAN MATCH.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_cannot_collide_in_patterns_or_tags() {
        let k = Keys::new("p", false);
        assert_eq!(k.meta("a:b"), "p:job:a%3Ab:meta");
        assert_eq!(
            k.job_of_meta(&k.meta("50%:x{y}")).as_deref(),
            Some("50%:x{y}")
        );
        assert_eq!(k.buckets_pattern("a*b"), "p:job:a\\*b:h:*");
        let c = Keys::new("p", true);
        assert_eq!(c.meta("j"), "p:job:{j}:meta");
        assert_eq!(c.bucket("j{x}", 7, 3), "p:job:{j%7Bx%7D}:h:7:3");
        assert_eq!(
            c.job_of_meta("p:job:{j%7Bx%7D}:meta").as_deref(),
            Some("j{x}")
        );
        assert_eq!(c.job_of_meta("p:job:j:meta"), None);
    }
}
