use crate::cli::test_line as run;

const STORAGE: &str =
    r#"{"driver":"file","filename":"/img/x.qcow2","node-name":"libvirt-1-storage","auto-read-only":true,"discard":"unmap"}"#;
const FORMAT: &str =
    r#"{"node-name":"libvirt-1-format","read-only":false,"discard":"unmap","driver":"qcow2","file":"libvirt-1-storage","backing":null}"#;
const DEVICE: &str =
    r#"{"driver":"virtio-blk-pci","bus":"pci.0","addr":"0x2","drive":"libvirt-1-format","id":"virtio-disk0","bootindex":1}"#;

fn line(extra: &str) -> String {
    format!("-kernel k -blockdev {STORAGE} -blockdev {FORMAT} -device {DEVICE} {extra}")
}

/// libvirt 9.0's qcow2 disk becomes one disk: the image, its format, the node and device
/// names, the chain ending at the image (`backing: null`).
#[test]
fn libvirt_disk() {
    let c = run(&line("")).unwrap();
    assert_eq!(c.drives.len(), 1);
    let d = &c.drives[0];
    assert_eq!(d.file.to_str(), Some("/img/x.qcow2"));
    assert_eq!((d.format.as_deref(), d.read_only, d.ignore_flush), (Some("qcow2"), false, false));
    assert_eq!(d.id, "libvirt-1-format");
    let b = d.blockdev.as_ref().unwrap();
    assert_eq!(b.storage_node, "libvirt-1-storage");
    assert_eq!(b.storage_driver, "file");
    assert_eq!(b.qdev_id.as_deref(), Some("virtio-disk0"));
    assert!(b.backing.is_empty() && b.backing_ends);
    assert_eq!(d.origin(), format!("-blockdev {STORAGE}"));
}

/// The key=value spelling, a read-only raw disk straight on a protocol node, `cache`
/// as an object, a backing node.
#[test]
fn other_forms() {
    let c =
        run("-kernel k -blockdev driver=host_device,filename=/dev/x,node-name=s,read-only=on -device virtio-blk-pci,drive=s,serial=abc")
            .unwrap();
    let d = &c.drives[0];
    assert_eq!((d.format.as_deref(), d.read_only, d.id.as_str()), (Some("raw"), true, "s"));
    assert_eq!(d.blockdev.as_ref().unwrap().serial, "abc");
    let c = run(r#"-kernel k -blockdev {"driver":"file","filename":"/b","node-name":"bs"} -blockdev {"driver":"qcow2","file":"bs","node-name":"bf","backing":null} -blockdev {"driver":"file","filename":"/t","node-name":"ts"} -blockdev {"driver":"qcow2","file":"ts","node-name":"tf","backing":"bf","cache":{"direct":false,"no-flush":true}} -device virtio-blk-pci,drive=tf"#).unwrap();
    let d = &c.drives[0];
    assert!(d.ignore_flush);
    let b = d.blockdev.as_ref().unwrap();
    assert_eq!((b.backing.clone(), b.backing_ends), (vec!["/b".into()], true));
    let c = run(r#"-kernel k -blockdev {"driver":"file","filename":"/t","node-name":"ts"} -blockdev {"driver":"qcow2","file":"ts","node-name":"tf"} -device virtio-blk-pci,drive=tf"#).unwrap();
    let b = c.drives[0].blockdev.as_ref().unwrap();
    assert!(b.backing.is_empty() && !b.backing_ends);
}

/// Each refusal is one line naming the option, in QEMU's words where QEMU has them.
#[test]
fn refusals() {
    let bad = |l: &str| run(&format!("-kernel k {l}")).unwrap_err();
    let s = r#"-blockdev {"driver":"file","filename":"/x","node-name":"s"}"#;
    assert_eq!(
        bad(r#"-blockdev {"driver":"file","filename":"/x"}"#),
        r#"-blockdev {"driver":"file","filename":"/x"}: 'node-name' must be specified for the root node"#
    );
    assert_eq!(
        bad(&format!("{s} {s}")),
        r#"-blockdev {"driver":"file","filename":"/x","node-name":"s"}: Duplicate nodes with node-name='s'"#
    );
    assert_eq!(
        bad("-blockdev driver=qcow2,file=zz,node-name=f"),
        "-blockdev driver=qcow2,file=zz,node-name=f: Cannot find device='zz' nor node-name='zz'"
    );
    assert_eq!(
        bad("-blockdev driver=bogus,node-name=f"),
        "-blockdev driver=bogus,node-name=f: Parameter 'driver' does not accept value 'bogus'"
    );
    assert_eq!(
        bad("-blockdev driver=nbd,node-name=f"),
        "-blockdev driver=nbd,node-name=f: godwit has no 'nbd' block driver (it has file, host_device, raw and qcow2)"
    );
    assert_eq!(
        bad("-blockdev driver=file,filename=/x,node-name=s,bogus=1"),
        "-blockdev driver=file,filename=/x,node-name=s,bogus=1: Parameter 'bogus' is unexpected"
    );
    assert_eq!(
        bad("-blockdev driver=file,filename=/x,node-name=s,discard=bogus"),
        "-blockdev driver=file,filename=/x,node-name=s,discard=bogus: Parameter 'discard' does not accept value 'bogus'"
    );
    assert!(bad("-blockdev driver=file,filename=/x,node-name=s,cache.direct=on").contains("O_DIRECT"));
    assert!(bad("-blockdev driver=file,filename=/x,node-name=s,locking=off").contains("locking=off"));
    assert_eq!(
        bad(&format!("{s} -blockdev driver=raw,file=s,node-name=f,backing=")),
        format!("-blockdev driver=raw,file=s,node-name=f,backing=: Parameter 'backing' is unexpected")
    );
    assert_eq!(
        bad(&format!(
            "{s} -blockdev driver=raw,file=s,node-name=f -blockdev driver=raw,file=s,node-name=g"
        )),
        "-blockdev driver=raw,file=s,node-name=g: node 's' is already used by node 'f'"
    );
    assert_eq!(
        bad("-blockdev driver=file,filename=/x,node-name=s,read-only=on -blockdev driver=raw,file=s,node-name=f"),
        "-blockdev driver=raw,file=s,node-name=f: Block node is read-only"
    );
    assert_eq!(
        bad("-device virtio-blk-pci,drive=zz"),
        "-device virtio-blk-pci,drive=zz: Property 'virtio-blk-device.drive' can't find value 'zz'"
    );
    assert_eq!(bad("-device virtio-blk-pci"), "-device virtio-blk-pci: drive property not set");
    assert_eq!(
        bad(&format!("{s} -device virtio-blk-pci,drive=s -device virtio-blk-pci,drive=s,id=d2")),
        "-device virtio-blk-pci,drive=s,id=d2: node 's' is already the disk of device 's'"
    );
    assert_eq!(
        bad(&format!("{s} -device virtio-blk-pci,drive=s,num-queues=2")),
        "-device virtio-blk-pci,drive=s,num-queues=2: Property 'virtio-blk-pci.num-queues' not found"
    );
}
