module github.com/cleanrelay/cleanrelay

go 1.26.0

require (
	github.com/ProtonMail/go-crypto v1.5.2
	github.com/cretz/bine v0.2.1-0.20221201125941-b9d31d9c7866
	github.com/golang-jwt/jwt/v5 v5.3.1
	github.com/gorilla/websocket v1.5.3
	golang.org/x/crypto v0.58.0
	golang.org/x/sys v0.49.0
	golang.org/x/text v0.43.0
	rsc.io/qr v0.2.0
)

require (
	github.com/cloudflare/circl v1.6.3 // indirect
	golang.org/x/net v0.60.0 // indirect
)
