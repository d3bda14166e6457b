package heappeak

import "testing"

var sink [][]byte

func TestSamplerSeesAnAllocationThatIsHeld(t *testing.T) {
	s := Start()
	for range 64 {
		sink = append(sink, make([]byte, 1<<20)) // 64 MiB held until Stop
	}
	_, growth := s.Stop()
	if growth < 32<<20 {
		t.Fatalf("growth %d bytes while 64 MiB were held", growth)
	}
	sink = nil
}
