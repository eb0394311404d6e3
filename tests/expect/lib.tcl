# Helpers shared by the expect scripts.
proc fail {msg} { puts "\nFAIL [info script]: $msg"; exit 1 }

# Waits for the next heartbeat from spawn id $gw and returns its number.
proc next_hb {gw} {
    expect {
        -i $gw -re {HB ([0-9]+)\r} { return $expect_out(1,string) }
        -i $gw timeout { fail "no heartbeat" }
        -i $gw eof { fail "godwit exited" }
    }
}

# The guest is paused: nothing arrives from $gw for two seconds after a short drain.
proc expect_quiet {gw} {
    expect -i $gw -timeout 1 -re {.+} { exp_continue -continue_timer } timeout {}
    expect {
        -i $gw -timeout 2 -re {HB [0-9]+} { fail "heartbeat while paused" }
        -i $gw timeout {}
    }
}

# Runs a monitor command on $mon and waits for the next prompt.
proc mon {mon cmd {want ""}} {
    send -i $mon "$cmd\r"
    expect {
        -i $mon -re "\r\n(.*)\\(qemu\\) $" {
            set out $expect_out(1,string)
            if {$want ne "" && [string first $want $out] < 0} { fail "$cmd printed {$out}, wanted {$want}" }
            return $out
        }
        -i $mon timeout { fail "no prompt after $cmd" }
        -i $mon eof { fail "monitor closed after $cmd" }
    }
}

# stop: heartbeats stop; cont: they resume from the next number; quit: exit status 0.
proc stop_cont_quit {gw mon} {
    set a [next_hb $gw]
    mon $mon "info status" "VM status: running"
    mon $mon "stop"
    mon $mon "info status" "VM status: paused"
    expect_quiet $gw
    mon $mon "cont"
    set b [next_hb $gw]
    if {$b <= $a} { fail "heartbeat went back: $a then $b" }
    mon $mon "info status" "VM status: running"
    send -i $mon "quit\r"
    expect -i $gw eof
    lassign [wait -i $gw] pid spawnid os_error status
    if {$status != 0} { fail "exit status $status" }
}
