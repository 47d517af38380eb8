package relay

// WriteBufferDraws is how often gorilla/websocket asked s's upgrader for a write buffer: never, while the
// relay writes every frame itself.
func WriteBufferDraws(s *Server) int64 {
	return s.upgrader.WriteBufferPool.(*handshakeOnlyPool).gets.Load()
}
