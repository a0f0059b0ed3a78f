package discordemu

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bwmarrin/discordgo"
)

func TestFixture_DevGuild(t *testing.T) {
	t.Parallel()
	e, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx := testCtx(t)
	if err := e.Admin().LoadFixtureFile(ctx, filepath.Join("..", "..", "deploy", "dev", "guild.yaml")); err != nil {
		t.Fatalf("LoadFixtureFile: %v", err)
	}
	st, err := e.Admin().State(ctx, "1100000000000000000")
	if err != nil {
		t.Fatal(err)
	}
	if st.Guild.Name != "scimcord dev" || st.Guild.OwnerID != "1100000000000000900" {
		t.Fatalf("guild %+v", st.Guild)
	}
	wantPos := map[string]int{"1100000000000000101": 1, "1100000000000000102": 2, "1100000000000000103": 3, "1100000000000000104": 4, "1100000000000000199": 5}
	for id, p := range wantPos {
		if r := st.Role(id); r == nil || r.Position != p {
			t.Errorf("role %s = %+v, want position %d", id, r, p)
		}
	}
	if bot := st.Role("1100000000000000199"); !bot.Managed || bot.Tags == nil || bot.Tags.BotID != "1100000000000000801" {
		t.Errorf("bot role %+v", bot)
	}
	if len(st.Members) != 11 || st.Member("1100000000000000900") != nil {
		t.Fatalf("members = %d", len(st.Members))
	}
	if m := st.Member("1100000000000001010"); m == nil || len(m.Roles) != 1 || m.Roles[0] != "1100000000000000104" {
		t.Fatalf("judy = %+v", m)
	}
	s := session(t, e, "emu-dev-bot-token")
	if err := s.GuildMemberRoleAdd("1100000000000000000", "1100000000000001001", "1100000000000000101"); err != nil {
		t.Fatalf("role add with dev token: %v", err)
	}
}

func TestFixture_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, doc string }{
		{"unknown field", "guilds:\n  - {id: \"1\", name: x, owner_id: \"2\", bogus: 1}\n"},
		{"unknown member user", "guilds:\n  - {id: \"1\", name: x, owner_id: \"2\", members: [{user_id: \"3\"}]}\n"},
		{"bad permission name", "guilds:\n  - {id: \"1\", name: x, owner_id: \"2\", everyone_permissions: [NOPE]}\n"},
		{"unknown role ref", "users: [{id: \"3\", username: u}]\nguilds:\n  - {id: \"1\", name: x, owner_id: \"2\", members: [{user_id: \"3\", roles: [nope]}]}\n"},
		{"not yaml", "{{{"},
	}
	e, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.Admin().LoadFixture(testCtx(t), []byte(tc.doc)); err == nil {
				t.Fatalf("want error")
			}
			if _, err := e.Admin().State(testCtx(t), "1"); err == nil {
				t.Fatalf("failed fixture left state behind")
			}
		})
	}
}

func TestState_PersistAndReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.json")
	cfg := DefaultConfig()
	cfg.StatePath = path
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if e.StateFileExisted() {
		t.Fatal("state file should not exist yet")
	}
	if err := e.Admin().LoadFixture(testCtx(t), []byte(testFixture)); err != nil {
		t.Fatal(err)
	}
	s := session(t, e, tToken)
	if err := s.GuildMemberRoleAdd(tGuild, tAlice, tMid); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GuildRoleCreate(tGuild, &discordgoRoleParams); err != nil {
		t.Fatal(err)
	}
	_ = e.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("state file: %v", err)
	}
	e2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e2.Close() })
	if !e2.StateFileExisted() {
		t.Fatal("state file should exist")
	}
	st := mustState(t, e2, tGuild)
	if !hasStr(st.Member(tAlice).Roles, tMid) {
		t.Fatalf("alice roles after reload = %v", st.Member(tAlice).Roles)
	}
	if st.RoleByName("persisted") == nil {
		t.Fatalf("created role lost")
	}
	// the bot token still works after reload
	if _, err := session(t, e2, tToken).GuildMember(tGuild, tAlice); err != nil {
		t.Fatal(err)
	}
}

var discordgoRoleParams = discordgo.RoleParams{Name: "persisted"}

func TestConfig_ZeroValueIsStrict(t *testing.T) {
	t.Parallel()
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	c, err := e.Admin().Config(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if c.Profile != d.Profile || c.TimeScale != 1 || c.GlobalLimitPerSec != 50 || c.Strict.CheckUntouchedRoles == nil || !*c.Strict.CheckUntouchedRoles ||
		c.Strict.UnknownRoleInPatch != "10011" || c.Strict.MaxRoles != 250 || c.Strict.InvalidClientStatus != 401 {
		t.Fatalf("zero config normalized to %+v", c)
	}
}
