package outbox

import (
	"encoding/json"
	"fmt"
	"strings"
)

// JetStream error codes the publisher maps (nats-server errors.json).
const (
	errCodeMessageTooLarge  = 10054
	errCodeStoreFailed      = 10077
	errCodeStreamNotFound   = 10059
	errCodeNoMatchingStream = 10060
	errCodeBatchDuplicate   = 10201
	errCodeBatchesInFlight  = 10210
	// No quorum or no leader: the store exists but cannot take writes now.
	errCodeClusterNotAvail     = 10008
	errCodeClusterNotLeader    = 10009
	errCodeStreamOffline       = 10118
	errCodeStreamOfflineReason = 10194
)

// pubAck is JetStream's answer to a publish or an atomic batch commit.
type pubAck struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Count     int    `json:"count"`
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     uint16 `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// parsePubAck returns the error the answer carries, mapped to a sentinel
// where one fits.
func parsePubAck(data []byte) (pubAck, error) {
	var a pubAck
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("read outbox acknowledgement: %w", err)
	}
	if a.Error != nil {
		return a, apiError(a.Error.Code, a.Error.ErrCode, a.Error.Description)
	}
	if a.Stream == "" {
		return a, fmt.Errorf("%w: empty acknowledgement", ErrNoAck)
	}
	return a, nil
}

func apiError(code int, errCode uint16, desc string) error {
	switch {
	case errCode == errCodeMessageTooLarge:
		return fmt.Errorf("%w: %s", ErrTooLarge, desc)
	case errCode == errCodeStoreFailed && strings.Contains(desc, "maximum"):
		return fmt.Errorf("%w: %s", ErrFull, desc)
	case errCode == errCodeStreamNotFound || errCode == errCodeNoMatchingStream:
		return fmt.Errorf("%w: %s", ErrNoStream, desc)
	case errCode == errCodeClusterNotAvail || errCode == errCodeClusterNotLeader ||
		errCode == errCodeStreamOffline || errCode == errCodeStreamOfflineReason:
		return fmt.Errorf("%w: %s", ErrUnavailable, desc)
	case errCode == errCodeBatchDuplicate:
		return fmt.Errorf("%w: %s", errBatchHasDuplicate, desc)
	case errCode == errCodeBatchesInFlight:
		return fmt.Errorf("%w: %s", errBatchesBusy, desc)
	}
	return fmt.Errorf("outbox refused the event: %s (code %d, err_code %d)", desc, code, errCode)
}
