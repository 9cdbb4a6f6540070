package gnl

// SetSequence sets the connection's last sequence number, so that tests can make a window of
// requests cross 2^32 (where nextSeq skips 0) without sending four billion requests first.
func SetSequence(c *Conn, seq uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq = seq
}
