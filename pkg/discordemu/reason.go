package discordemu

import (
	"unicode/utf8"
)

// MaxAuditReasonLen is the maximum decoded length of X-Audit-Log-Reason.
const MaxAuditReasonLen = 512

// DecodeAuditReason decodes an X-Audit-Log-Reason header value (§6.17): percent
// decoding as UTF-8 with '+' kept literally. When raw is not valid
// percent-encoding, contains bytes ≥ 0x80 or decodes to invalid UTF-8, the value
// is returned as received with encoded = false.
func DecodeAuditReason(raw string) (reason string, encoded bool) {
	buf := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= 0x80:
			return raw, false
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return raw, false
			}
			buf = append(buf, unhex(raw[i+1])<<4|unhex(raw[i+2]))
			i += 2
		default:
			buf = append(buf, c)
		}
	}
	if !utf8.Valid(buf) {
		return raw, false
	}
	return string(buf), true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
