//! The 16550A UART (COM1 at 0x3f8, IRQ 4), on vm-superio's model.

use crate::bus::BusDevice;
use crate::irq::IrqEvent;
use crate::state::{Persist, StateError, StateReader, StateWriter, VersionedState};
use std::io::Write;
use vm_superio::Serial;
use vm_superio::serial::{NoEvents, SerialState as SuperioState};

pub const COM1_PORT: u64 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
/// Number of I/O ports a UART decodes.
pub const UART_PORTS: u64 = 8;

/// Where the guest's output goes.
pub type SerialOutput = Box<dyn Write + Send>;

type Uart = Serial<IrqEvent, NoEvents, SerialOutput>;

/// A UART with an output sink and an input FIFO fed by the VMM.
pub struct SerialDevice {
    // Always `Some` outside `restore`, which needs to move the output writer across.
    uart: Option<Uart>,
}

impl SerialDevice {
    pub fn new(irq: IrqEvent, out: SerialOutput) -> Self {
        SerialDevice {
            uart: Some(Serial::new(irq, out)),
        }
    }

    fn uart(&mut self) -> &mut Uart {
        self.uart.as_mut().expect("serial device lost its UART")
    }

    /// Free space in the receive FIFO.
    pub fn input_room(&mut self) -> usize {
        self.uart().fifo_capacity()
    }

    /// Queues bytes typed by the user; returns how many fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let uart = self.uart();
        if uart.fifo_capacity() == 0 {
            return 0;
        }
        uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() == 1 && offset < UART_PORTS {
            data[0] = self.uart().read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() == 1 && offset < UART_PORTS {
            // An output sink that fails (a closed pty, a full disk) must not stop the guest.
            let _ = self.uart().write(offset as u8, data[0]);
        }
    }
}

/// Saved UART registers and receive FIFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialState {
    pub regs: [u8; 9],
    pub fifo: Vec<u8>,
}

/// Receive FIFO size of the 16550A.
const FIFO_SIZE: usize = 64;

impl VersionedState for SerialState {
    const NAME: &'static str = "serial-16550a";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        for r in self.regs {
            w.u8(r);
        }
        w.bytes(&self.fifo);
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let mut regs = [0u8; 9];
        for reg in &mut regs {
            *reg = r.u8()?;
        }
        let fifo = r.bytes()?.to_vec();
        if fifo.len() > FIFO_SIZE {
            return Err(StateError::Invalid {
                name: Self::NAME,
                why: format!("FIFO holds {} bytes", fifo.len()),
            });
        }
        Ok(SerialState { regs, fifo })
    }
}

impl Persist for SerialDevice {
    type State = SerialState;

    fn save(&self) -> SerialState {
        let s = self.uart.as_ref().expect("serial device lost its UART").state();
        SerialState {
            regs: [
                s.baud_divisor_low,
                s.baud_divisor_high,
                s.interrupt_enable,
                s.interrupt_identification,
                s.line_control,
                s.line_status,
                s.modem_control,
                s.modem_status,
                s.scratch,
            ],
            fifo: s.in_buffer,
        }
    }

    fn restore(&mut self, state: &SerialState) -> Result<(), StateError> {
        let [bdl, bdh, ier, iir, lcr, lsr, mcr, msr, scr] = state.regs;
        let st = SuperioState {
            baud_divisor_low: bdl,
            baud_divisor_high: bdh,
            interrupt_enable: ier,
            interrupt_identification: iir,
            line_control: lcr,
            line_status: lsr,
            modem_control: mcr,
            modem_status: msr,
            scratch: scr,
            in_buffer: state.fifo.clone(),
        };
        let old = self.uart.take().expect("serial device lost its UART");
        let irq = old.interrupt_evt().try_clone();
        let out = old.into_writer();
        let irq = irq.map_err(|e| StateError::Invalid {
            name: SerialState::NAME,
            why: e.to_string(),
        })?;
        match Serial::from_state(&st, irq, NoEvents, out) {
            Ok(u) => {
                self.uart = Some(u);
                Ok(())
            }
            Err(e) => Err(StateError::Invalid {
                name: SerialState::NAME,
                why: format!("{e:?}"),
            }),
        }
    }
}

impl crate::device::PlainDevice for SerialDevice {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_input_and_state() {
        let sink = Sink::default();
        let irq = IrqEvent::new().unwrap();
        let mut dev = SerialDevice::new(irq.try_clone().unwrap(), Box::new(sink.clone()));
        for b in b"hi" {
            dev.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi");
        dev.write(1, &[0x01]); // enable the received-data interrupt
        assert_eq!(dev.enqueue_input(b"xyz"), 3);
        assert!(irq.eventfd().read().unwrap() >= 1);
        dev.write(7, &[0x5a]); // scratch register
        let saved = dev.save();
        let bytes = saved.to_bytes();
        let mut other = SerialDevice::new(IrqEvent::new().unwrap(), Box::new(std::io::sink()));
        other.restore(&SerialState::from_bytes(&bytes).unwrap()).unwrap();
        let mut b = [0u8];
        other.read(0, &mut b);
        assert_eq!(b[0], b'x');
        other.read(7, &mut b);
        assert_eq!(b[0], 0x5a);
        assert_eq!(dev.input_room(), 61);
    }

    #[test]
    fn bad_state_refused() {
        let st = SerialState {
            regs: [0; 9],
            fifo: vec![0; 65],
        };
        assert!(SerialState::from_bytes(&st.to_bytes()).is_err());
    }
}
