// Package bench measures a cleanrelay relay under load next to a bare forwarder (the floor), speaking the real
// protocol through package client: frames forwarded and their latency (pairs), memory held per idle connection
// (idle), and connections set up per second (connect), with the CPU time of the server and of the tool itself.
package bench
