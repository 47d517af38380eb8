module github.com/cleanrelay/cleanrelay

go 1.26

require (
	github.com/cretz/bine v0.2.1-0.20221201125941-b9d31d9c7866
	github.com/gorilla/websocket v1.5.3
	rsc.io/qr v0.2.0
)

require (
	golang.org/x/crypto v0.0.0-20210513164829-c07d793c2f9a // indirect
	golang.org/x/net v0.0.0-20210525063256-abc453219eb5 // indirect
	golang.org/x/sys v0.0.0-20210423082822-04245dca01da // indirect
)
