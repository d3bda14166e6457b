package smaregi

import (
	"fmt"
	"time"
)

// TimeLayout is Smaregi's time format. It carries no zone: every time is
// Japan time.
const TimeLayout = "2006-01-02 15:04:05"

// Tokyo is the zone of every Smaregi time. The tz database is used when the
// system has it; otherwise a fixed +09:00 zone, which is exact because Japan
// has had no daylight saving time since 1951.
var Tokyo = loadTokyo()

func loadTokyo() *time.Location {
	if loc, err := time.LoadLocation("Asia/Tokyo"); err == nil {
		return loc
	}
	return time.FixedZone("JST", 9*60*60)
}

// ParseTime parses "YYYY-MM-DD HH:MM:SS" as Japan time. The result is an
// instant; call UTC() to compare it with other clocks.
func ParseTime(s string) (time.Time, error) {
	// Hand-parse the fixed layout: this runs once per row, and a full stock
	// read is 100,000 rows.
	if len(s) == len(TimeLayout) && s[4] == '-' && s[7] == '-' && s[10] == ' ' && s[13] == ':' && s[16] == ':' {
		y, ok1 := digits(s[0:4])
		mo, ok2 := digits(s[5:7])
		d, ok3 := digits(s[8:10])
		h, ok4 := digits(s[11:13])
		mi, ok5 := digits(s[14:16])
		se, ok6 := digits(s[17:19])
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && se <= 59 {
			t := time.Date(y, time.Month(mo), d, h, mi, se, 0, Tokyo)
			if t.Day() == d { // reject 2026-02-30, which time.Date would normalise
				return t, nil
			}
		}
	}
	t, err := time.ParseInLocation(TimeLayout, s, Tokyo)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse Smaregi time %q: %w", s, err)
	}
	return t, nil
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// FormatTime formats t as Japan time in Smaregi's layout. Sub-second parts
// are dropped (truncated), so a watermark never moves past a row.
func FormatTime(t time.Time) string {
	return t.In(Tokyo).Format(TimeLayout)
}
