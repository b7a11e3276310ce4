use super::*;

fn fx(sql: &str) -> Effects {
    effects(sql.as_bytes(), true, true).unwrap()
}

#[test]
fn plain_settings_are_replayed_not_dirty() {
    let e = fx("SET search_path = app, public; RESET statement_timeout; SET SESSION work_mem TO '8MB'");
    assert!(!e.dirty && !e.pin);
    let names: Vec<_> = e.settings.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["search_path", "statement_timeout", "work_mem"]);
    assert!(fx("RESET ALL").reset_all);
    // SET LOCAL ends with the transaction: nothing to do.
    assert!(fx("SET LOCAL search_path = x").is_empty());
}

#[test]
fn harmless_text_costs_no_classification() {
    assert_eq!(effects(b"SELECT 1", true, false), None);
    assert_eq!(effects(b"SELECT 'SET x = 1'", true, false), None);
    assert!(effects(b"SET x.y = 1", true, false).is_some());
}

#[test]
fn unreplayable_state_is_dirty() {
    for sql in ["SET ROLE bob", "SELECT set_config('a.b', 'c', false)", "DO $$BEGIN END$$", "LOAD 'x'", "SET SESSION AUTHORIZATION bob", "SELECT 'unterminated"]
    {
        assert!(fx(sql).dirty, "{sql}");
    }
}

#[test]
fn state_that_cannot_be_replayed_pins() {
    for sql in [
        "CREATE TEMP TABLE t (a int)",
        "create temporary table t as select 1",
        "SELECT 1 INTO TEMP t",
        "PREPARE p AS SELECT 1",
        "SELECT pg_advisory_lock(1)",
        "select pg_try_advisory_lock_shared(1)",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "CREATE TABLE pg_temp.t (a int)",
    ] {
        assert!(fx(sql).pin, "{sql}");
    }
    let d = fx("SELECT dblink_connect('c', 'dbname=x')");
    assert!(d.pin && d.sticky);
    // Transaction-level locks end with the transaction.
    assert!(!fx("SELECT pg_advisory_xact_lock(1)").pin);
    let u = fx("SELECT pg_advisory_unlock(1)");
    assert!(!u.pin && u.may_release);
}

#[test]
fn releases_are_seen() {
    for sql in ["DROP TABLE t", "DISCARD TEMP", "DEALLOCATE p", "CLOSE c", "ROLLBACK", "SELECT pg_advisory_unlock_all()"] {
        assert!(fx(sql).may_release, "{sql}");
    }
    assert!(fx("DISCARD ALL").discard_all);
    assert!(!fx("DISCARD TEMP").discard_all);
    assert!(fx("DEALLOCATE ALL").deallocate_all);
    assert!(fx("deallocate prepare all").deallocate_all);
    assert!(!fx("DEALLOCATE p").deallocate_all);
    assert!(!fx("SELECT 1").may_release);
}

#[test]
fn listen_channels_are_named_as_postgres_names_them() {
    assert_eq!(fx("LISTEN Foo").listen, [ListenOp::Listen("foo".into())]);
    assert_eq!(fx(r#"LISTEN "Mixed""Quote""#).listen, [ListenOp::Listen("Mixed\"Quote".into())]);
    assert_eq!(fx("UNLISTEN a; UNLISTEN *").listen, [ListenOp::Unlisten("a".into()), ListenOp::UnlistenAll]);
    let long = "x".repeat(100);
    assert_eq!(fx(&format!("LISTEN {long}")).listen, [ListenOp::Listen("x".repeat(63))]);
    // Anything else is left to the server (and resets it).
    assert!(fx("LISTEN U&\"d\\0061t\"").dirty);
    assert!(fx("LISTEN \"\"").dirty);
}
