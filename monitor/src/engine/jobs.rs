//! Jobs (QEMU's `job` layer, as far as snapshot jobs need it): each has an ID, a type and
//! a status that moves created → running → (waiting → pending →) concluded, announced as
//! `JOB_STATUS_CHANGE` events, and stays listed in `query-jobs` until `job-dismiss`.

use super::events::{Event, EventBus};
use super::{EngineError, EngineResult};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobType {
    SnapshotSave,
    SnapshotLoad,
    SnapshotDelete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    Created,
    Running,
    Waiting,
    Pending,
    Aborting,
    Concluded,
    Null,
}

impl JobStatus {
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Created => "created",
            JobStatus::Running => "running",
            JobStatus::Waiting => "waiting",
            JobStatus::Pending => "pending",
            JobStatus::Aborting => "aborting",
            JobStatus::Concluded => "concluded",
            JobStatus::Null => "null",
        }
    }
}

/// One entry of `query-jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobInfo {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: JobType,
    pub status: JobStatus,
    pub current_progress: u64,
    pub total_progress: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `snapshot-save`, `snapshot-load` and `snapshot-delete` (which has no `vmstate`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotJob {
    pub job_id: String,
    pub tag: String,
    #[serde(default)]
    pub vmstate: Option<String>,
    pub devices: Vec<String>,
}

/// QEMU's rule for IDs: a letter, then letters, digits, `-`, `.` and `_`.
pub fn id_wellformed(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// The jobs of a machine, newest first (as `query-jobs` lists them).
#[derive(Default)]
pub struct Jobs {
    list: Mutex<Vec<JobInfo>>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<JobInfo>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, bus: &EventBus, id: &str, status: JobStatus) {
        if let Some(j) = self.lock().iter_mut().find(|j| j.id == id) {
            j.status = status;
        }
        bus.emit(Event::job_status_change(id, status.name()));
    }

    /// A new job, `created` then `running`; refused if the ID is taken or malformed.
    pub fn start(&self, bus: &EventBus, id: &str, kind: JobType) -> EngineResult<()> {
        if !id_wellformed(id) {
            return Err(EngineError::generic(format!("Invalid job ID '{id}'")));
        }
        {
            let mut list = self.lock();
            if list.iter().any(|j| j.id == id) {
                return Err(EngineError::generic(format!("Job ID '{id}' already in use")));
            }
            list.insert(
                0,
                JobInfo {
                    id: id.to_string(),
                    kind,
                    status: JobStatus::Created,
                    current_progress: 0,
                    total_progress: 1,
                    error: None,
                },
            );
        }
        bus.emit(Event::job_status_change(id, JobStatus::Created.name()));
        self.set(bus, id, JobStatus::Running);
        Ok(())
    }

    /// The job's work is done: `waiting`, `pending`, `concluded` on success, `aborting`,
    /// `concluded` with the error otherwise.
    pub fn finish(&self, bus: &EventBus, id: &str, result: Result<(), String>) {
        let ok = result.is_ok();
        if let Some(j) = self.lock().iter_mut().find(|j| j.id == id) {
            j.current_progress = 1;
            j.error = result.err();
        }
        let steps: &[JobStatus] = if ok {
            &[JobStatus::Waiting, JobStatus::Pending, JobStatus::Concluded]
        } else {
            &[JobStatus::Aborting, JobStatus::Concluded]
        };
        for s in steps {
            self.set(bus, id, *s);
        }
    }

    pub fn query(&self) -> Vec<JobInfo> {
        self.lock().clone()
    }

    /// `job-dismiss`: forgets a concluded job (`null`).
    pub fn dismiss(&self, bus: &EventBus, id: &str) -> EngineResult<()> {
        {
            let mut list = self.lock();
            let Some(i) = list.iter().position(|j| j.id == id) else {
                return Err(EngineError::generic("Job not found"));
            };
            if list[i].status != JobStatus::Concluded {
                return Err(EngineError::generic(format!(
                    "Job '{id}' in state '{}' cannot accept command verb 'dismiss'",
                    list[i].status.name()
                )));
            }
            list.remove(i);
        }
        bus.emit(Event::job_status_change(id, JobStatus::Null.name()));
        Ok(())
    }

    /// At exit every remaining job goes away (`null`), as in QEMU.
    pub fn clear(&self, bus: &EventBus) {
        let gone: Vec<String> = self.lock().drain(..).map(|j| j.id).collect();
        for id in gone {
            bus.emit(Event::job_status_change(&id, JobStatus::Null.name()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(rx: &crossbeam_channel::Receiver<super::super::events::Stamped>) -> Vec<String> {
        rx.try_iter()
            .map(|s| s.event.data.unwrap()["status"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn lifecycle() {
        let bus = EventBus::default();
        let rx = bus.subscribe();
        let jobs = Jobs::default();
        jobs.start(&bus, "s1", JobType::SnapshotSave).unwrap();
        assert_eq!(
            jobs.start(&bus, "s1", JobType::SnapshotSave).unwrap_err().desc,
            "Job ID 's1' already in use"
        );
        assert_eq!(
            jobs.start(&bus, "1x", JobType::SnapshotSave).unwrap_err().desc,
            "Invalid job ID '1x'"
        );
        assert!(jobs.dismiss(&bus, "s1").unwrap_err().desc.contains("in state 'running'"));
        jobs.finish(&bus, "s1", Ok(()));
        jobs.start(&bus, "s2", JobType::SnapshotLoad).unwrap();
        jobs.finish(&bus, "s2", Err("Snapshot 'x' does not exist in one or more devices".into()));
        let q = jobs.query();
        assert_eq!((q[0].id.as_str(), q[1].id.as_str()), ("s2", "s1"));
        assert!(q[0].error.is_some() && q[1].error.is_none());
        jobs.dismiss(&bus, "s1").unwrap();
        assert_eq!(jobs.dismiss(&bus, "s1").unwrap_err().desc, "Job not found");
        assert_eq!(
            statuses(&rx),
            [
                "created",
                "running",
                "waiting",
                "pending",
                "concluded",
                "created",
                "running",
                "aborting",
                "concluded",
                "null"
            ]
        );
        let v = serde_json::to_value(&q[0]).unwrap();
        assert_eq!(v["type"], "snapshot-load");
        assert_eq!(v["current-progress"], 1);
    }
}
