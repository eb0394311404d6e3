//! The features `query-cpu-model-expansion` reports: the CPUID vCPU 0 gets, by QEMU's
//! property names. Every model godwit takes gives the guest what KVM supports on this host
//! (see `-cpu help`), so each model's answer is that table.

use crate::cli::known_cpu_model;
use crate::cpu::{CpuError, cpuid, features};
use monitor::engine::{CpuFeature, EngineError};

/// The features a guest of `model` with `vcpus` vCPUs sees (QEMU's error for a model
/// `-cpu` would refuse).
pub fn features(model: &str, vcpus: u8) -> Result<Vec<CpuFeature>, EngineError> {
    if !known_cpu_model(model) {
        return Err(EngineError::generic(format!("CPU model '{model}' not found")));
    }
    let kvm = kvm_ioctls::Kvm::new().map_err(|e| EngineError::generic(format!("cannot open /dev/kvm: {e}")))?;
    let base = cpuid::supported(&kvm).map_err(|e| EngineError::generic(CpuError::SupportedCpuid(e).to_string()))?;
    let table = cpuid::for_vcpu(&base, 0, vcpus.max(1));
    Ok(features::of(table.as_slice())
        .into_iter()
        .map(|(name, enabled)| CpuFeature {
            name: name.into(),
            enabled,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_models_are_refused_as_qemu_refuses_them() {
        let e = features("foo", 1).unwrap_err();
        assert_eq!(e.desc, "CPU model 'foo' not found");
    }

    #[test]
    fn host_features_are_kvms() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            eprintln!("no /dev/kvm: skipped");
            return;
        };
        let f = features("host", 1).unwrap();
        let get = |n: &str| f.iter().find(|f| f.name == n).map(|f| f.enabled);
        // Every x86-64 CPU has these, and godwit always sets the hypervisor bit.
        for n in ["fpu", "tsc", "cx8", "sse2", "lm", "hypervisor"] {
            assert_eq!(get(n), Some(true), "{n}");
        }
        assert_eq!(get("ht"), Some(false), "one vCPU: no HTT");
        assert_eq!(
            features("host", 2).unwrap().iter().find(|f| f.name == "ht").map(|f| f.enabled),
            Some(true)
        );
        // Every model answers with what KVM gives (none is narrowed to its name's features).
        assert_eq!(features("qemu64", 1).unwrap(), f);
        let supported = cpuid::supported(&kvm).unwrap();
        let leaf7 = supported.as_slice().iter().find(|e| e.function == 7 && e.index == 0);
        assert_eq!(get("avx2"), Some(leaf7.is_some_and(|e| e.ebx & (1 << 5) != 0)));
    }
}
