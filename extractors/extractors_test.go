package extractors

import (
	"strings"
	"testing"
)

// Every kind is found by its name and by the ids it makes, and says what it supports.
func TestRegistry(t *testing.T) {
	for _, name := range Names() {
		k, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := ByID(k.IDPrefix + "0123456789abcdef"); !ok || got != k {
			t.Errorf("%s: ByID of its own id finds %v", name, got)
		}
		if k.Pool <= 0 || k.Resize == "" || !k.Supports("fid") {
			t.Errorf("%s: %+v", name, k)
		}
	}
	if k, _ := Lookup("inception"); !k.Supports("sfid") || k.Supports("class_acc") {
		t.Error("inception: sfid yes, class_acc no")
	}
	if k, _ := Lookup("fmnist"); k.Supports("sfid") || !k.Supports("class_acc") {
		t.Error("fmnist: sfid no, class_acc yes")
	}
	if _, err := Lookup("clip"); err == nil || !strings.Contains(err.Error(), "known: inception, fmnist") {
		t.Errorf("unknown kind: %v", err)
	}
	k, _ := Lookup("inception")
	if _, err := k.ID(""); err == nil || !strings.Contains(err.Error(), "CACHEBENCH_INCEPTION") {
		t.Errorf("no weights: %v", err)
	}
}
