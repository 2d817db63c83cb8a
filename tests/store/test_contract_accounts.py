"""The contract of the `Store` interface, continued (see test_contract.py): users, sessions, API tokens,
invitations, login throttling, site settings and upload reservations."""

from __future__ import annotations

import asyncio

import pytest

from app.exceptions import Conflict
from app.store.records import ApiToken, Invitation, LoginFailures, UploadHolder, new_id, now
from tests.clock import Clock
from tests.store.examples import image, job, user

# users, sessions, tokens -----------------------------------------------------------------------------


async def test_users(any_store):
    alice = user("Alice", email="a@x.org", display_name="Alice A.", quota=10**9)
    bob = user("bob", role="admin")
    await any_store.add_user(bob)
    await any_store.add_user(alice)
    with pytest.raises(Conflict, match="taken"):
        await any_store.add_user(user("ALICE"))
    assert await any_store.get_user(alice.id) == alice
    assert await any_store.get_user_by_name("alice") == alice
    assert await any_store.get_user_by_name("BOB") == bob
    assert await any_store.get_user("missing") is None and await any_store.get_user_by_name("carol") is None
    assert [u.username for u in await any_store.list_users()] == ["Alice", "bob"]
    await any_store.update_user(alice.id, disabled=True, quota=None, last_login=123.5, role="admin")
    changed = await any_store.get_user(alice.id)
    assert (changed.disabled, changed.quota, changed.last_login, changed.role) == (True, None, 123.5, "admin")
    assert not changed.is_admin
    await any_store.update_user(alice.id)
    with pytest.raises(ValueError, match="cannot change user fields"):
        await any_store.update_user(alice.id, username="mallory")


async def test_sessions(any_store):
    alice, bob = user("alice"), user("bob")
    await any_store.add_user(alice)
    await any_store.add_user(bob)
    any_store.use_clock(clock := Clock())
    await any_store.add_session("s1", alice.id, clock() + 60)
    await any_store.add_session("s2", alice.id, clock() + 60)
    await any_store.add_session("old", bob.id, clock() + 10)
    await any_store.add_session("s3", bob.id, clock() + 60)
    assert (await any_store.session_user("old")).id == bob.id
    clock.advance(10)  # a session is good until its expiry, not at it
    assert (await any_store.session_user("s1")).id == alice.id
    assert await any_store.session_user("old") is None
    assert await any_store.session_user("nope") is None
    await any_store.delete_session("s1")
    assert await any_store.session_user("s1") is None
    assert (await any_store.session_user("s2")).id == alice.id
    await any_store.delete_user_sessions(alice.id)
    assert await any_store.session_user("s2") is None
    assert (await any_store.session_user("s3")).id == bob.id
    with pytest.raises(Conflict):  # a key already in use is refused, never shared
        await any_store.add_session("s3", alice.id, now() + 60)
    assert (await any_store.session_user("s3")).id == bob.id


async def test_api_tokens(any_store):
    alice, bob = user("alice"), user("bob")
    await any_store.add_user(alice)
    await any_store.add_user(bob)
    first = ApiToken(new_id(), alice.id, "laptop", "hash1", created=1.0)
    second = ApiToken(new_id(), alice.id, "ci", "hash2", created=2.0)
    await any_store.add_token(second)
    await any_store.add_token(first)
    await any_store.add_token(ApiToken(new_id(), bob.id, "bob's", "hash3"))
    assert await any_store.list_tokens(alice.id) == [first, second]
    any_store.use_clock(Clock(4242.0))
    assert (await any_store.token_user("hash1")).id == alice.id
    used = (await any_store.list_tokens(alice.id))[0]
    assert used.last_used == 4242.0
    assert await any_store.token_user("nope") is None
    assert not await any_store.delete_token(bob.id, first.id)  # not bob's
    assert await any_store.delete_token(alice.id, first.id)
    assert not await any_store.delete_token(alice.id, first.id)
    assert await any_store.token_user("hash1") is None
    assert [t.name for t in await any_store.list_tokens(alice.id)] == ["ci"]
    with pytest.raises(Conflict):  # the same token hash twice is refused
        await any_store.add_token(ApiToken(new_id(), bob.id, "copy", "hash2"))
    assert (await any_store.token_user("hash2")).id == alice.id
    # a password change may revoke all of a user's tokens: the other user's stay
    assert await any_store.delete_user_tokens(alice.id) == 1
    assert await any_store.list_tokens(alice.id) == []
    assert await any_store.delete_user_tokens(alice.id) == 0
    assert (await any_store.token_user("hash3")).id == bob.id


async def test_invitations(any_store):
    old = Invitation(new_id(), "code-old", "admin", expires=now() + 60, created=1.0)
    new = Invitation(new_id(), "code-new", "admin", expires=now() + 60, created=2.0)
    gone = Invitation(new_id(), "code-gone", "admin", expires=now() - 1, created=3.0)
    for invitation in (old, new, gone):
        await any_store.add_invitation(invitation)
    assert [i.code_hash for i in await any_store.list_invitations()] == ["code-gone", "code-new", "code-old"]
    assert await any_store.get_invitation("code-new") == new
    assert await any_store.get_invitation("missing") is None
    assert not await any_store.use_invitation("code-gone", "late")  # expired
    assert await any_store.use_invitation("code-new", "carol")
    assert not await any_store.use_invitation("code-new", "dave")  # used
    used = await any_store.get_invitation("code-new")
    assert used.used_by == "carol" and used.used_at is not None
    assert not await any_store.expire_invitation(new.id)  # used
    assert not await any_store.expire_invitation(gone.id)  # expired already
    assert await any_store.expire_invitation(old.id)
    assert not await any_store.use_invitation("code-old", "erin")
    assert (await any_store.get_invitation("code-old")).expires <= now()


async def test_invitations_are_used_once_under_concurrency(any_store):
    await any_store.add_invitation(Invitation(new_id(), "code", "admin", expires=now() + 60))
    results = await asyncio.gather(*(any_store.use_invitation("code", f"u{n}") for n in range(10)))
    assert sum(results) == 1


# login throttling, site settings -------------------------------------------------------------------

async def test_login_failures_are_counted_per_key_within_a_window(any_store):
    keys = ["user:alice@10.0.0.1", "addr:10.0.0.1"]
    assert await any_store.login_failures(keys, since=0.0) == {}
    assert await any_store.login_failures([], since=0.0) == {}
    for at in (100.0, 101.0, 102.5):
        await any_store.add_login_failure(keys, at, forget_before=0.0)
    await any_store.add_login_failure(["addr:10.0.0.1", "addr:10.0.0.1"], 103.0, forget_before=0.0)
    assert await any_store.login_failures([*keys, "addr:10.9.9.9"], since=0.0) == {
        "user:alice@10.0.0.1": LoginFailures(3, 102.5), "addr:10.0.0.1": LoginFailures(4, 103.0)}
    # only failures at `since` or later count
    assert await any_store.login_failures(keys, since=101.0) == {
        "user:alice@10.0.0.1": LoginFailures(2, 102.5), "addr:10.0.0.1": LoginFailures(3, 103.0)}
    assert await any_store.login_failures(keys, since=103.5) == {}


async def test_login_failures_are_forgotten_and_cleared(any_store):
    await any_store.add_login_failure(["user:old@10.0.0.1"], 10.0, forget_before=0.0)
    await any_store.add_login_failure(["user:alice@10.0.0.1", "user:alice@10.0.0.2", "user:alicia@10.0.0.1",
                                       "addr:10.0.0.1"], 50.0, forget_before=0.0)
    # a new failure forgets every failure older than `forget_before`, of any key
    await any_store.add_login_failure(["addr:10.0.0.2"], 60.0, forget_before=20.0)
    assert await any_store.login_failures(["user:old@10.0.0.1"], since=0.0) == {}
    await any_store.clear_login_failures(["addr:10.0.0.2"])
    assert await any_store.login_failures(["addr:10.0.0.2"], since=0.0) == {}
    # a prefix clears one account from every address, and nothing else
    await any_store.clear_login_failures(prefix="user:alice@")
    left = await any_store.login_failures(
        ["user:alice@10.0.0.1", "user:alice@10.0.0.2", "user:alicia@10.0.0.1", "addr:10.0.0.1"], since=0.0)
    assert sorted(left) == ["addr:10.0.0.1", "user:alicia@10.0.0.1"]
    await any_store.add_login_failure([], 70.0, forget_before=0.0)  # no keys: nothing noted
    await any_store.clear_login_failures()  # neither keys nor prefix: nothing
    assert len(await any_store.login_failures(sorted(left), since=0.0)) == 2


async def test_concurrent_login_failures_each_count(any_store):
    await asyncio.gather(*(any_store.add_login_failure(["addr:10.0.0.1"], 100.0 + n, forget_before=0.0)
                           for n in range(20)))
    assert await any_store.login_failures(["addr:10.0.0.1"], since=0.0) == {
        "addr:10.0.0.1": LoginFailures(20, 119.0)}


async def test_site_settings(any_store):
    assert await any_store.site_settings() == {}
    await any_store.save_site_settings({"site_name": "Archive", "default_quota": 10**12,
                                        "open": False, "list": [1, "two"], "nested": {"a.b": None}})
    await any_store.save_site_settings({"site_name": "Renamed"})
    await any_store.save_site_settings({})
    assert await any_store.site_settings() == {"site_name": "Renamed", "default_quota": 10**12,
                                               "open": False, "list": [1, "two"], "nested": {"a.b": None}}


# upload reservations -------------------------------------------------------------------------------

async def test_upload_reservations_count_everything_that_holds_bytes(any_store):
    await any_store.add_images([image("stored", sha256="f", owner="u", size=300),
                                image("hdu1", sha256="f", hdu=1, owner="u", size=300)])  # one file
    await any_store.enqueue([job("up1", owner="u", provenance="upload", size=200),
                             job("batch", owner="u", size=10**6),  # not an upload
                             job("other", owner="v", provenance="upload", size=10**6)])
    first = await any_store.reserve_upload("r1", "u", 400, quota=1000, ttl=60)
    assert (first.granted, first.stored, first.pending, first.reserved, first.available) == (
        True, 300, 200, 0, 500)
    refused = await any_store.reserve_upload("r2", "u", 101, quota=1000, ttl=60)
    assert (refused.granted, refused.reserved, refused.available) == (False, 400, 100)
    # a reservation replaces what it held before
    assert (await any_store.reserve_upload("r1", "u", 450, quota=1000, ttl=60)).granted
    assert (await any_store.reserve_upload("r2", "u", 50, quota=1000, ttl=60)).granted
    await any_store.release_upload("r1")
    again = await any_store.reserve_upload("r3", "u", 450, quota=1000, ttl=60)
    assert (again.granted, again.reserved) == (True, 50)
    # another owner is not held back
    assert (await any_store.reserve_upload("r4", "v", 10, quota=1000, ttl=60)).granted is False  # their job
    assert (await any_store.reserve_upload("r4", "w", 1000, quota=1000, ttl=60)).granted


async def test_content_charges_count_while_the_owner_holds_the_content(any_store):
    await any_store.add_images([image("small", sha256="z", owner="u", size=100),
                                image("twin", sha256="z", hdu=1, owner="u", size=100),
                                image("theirs", sha256="z", owner="v", size=100)])
    await any_store.charge_content("u", "z", 5000)
    await any_store.charge_content("u", "z", 4000)  # the larger charge stands
    await any_store.charge_content("u", "gone", 7000)  # content u holds no image of: counts for nothing
    assert await any_store.content_charges() == [("u", "gone", 7000), ("u", "z", 5000)]
    await any_store.enqueue([job("up", owner="u", provenance="upload", size=50, charge=900)])
    check = await any_store.reserve_upload("r1", "u", 1, quota=10**6, ttl=60)
    assert (check.stored, check.pending) == (5000, 900)
    usage = await any_store.usage()
    assert (usage["u"].images, usage["u"].bytes) == (2, 5000)
    assert await any_store.usage("u") == {"u": usage["u"]}
    assert (usage["v"].images, usage["v"].bytes) == (1, 100)  # another owner's image of it is not charged
    await any_store.delete_images([img.id for img in await any_store.find_images() if img.owner == "u"])
    assert "u" not in await any_store.usage()


async def test_expired_reservations_hold_nothing(any_store):
    any_store.use_clock(clock := Clock())
    assert (await any_store.reserve_upload("r1", "u", 900, quota=1000, ttl=30)).granted
    clock.advance(29)
    assert not (await any_store.reserve_upload("r2", "u", 900, quota=1000, ttl=60)).granted
    clock.advance(2)
    assert (await any_store.reserve_upload("r2", "u", 900, quota=1000, ttl=60)).granted


async def test_concurrent_reservations_never_overshoot_the_quota(any_store):
    results = await asyncio.gather(*(any_store.reserve_upload(f"r{n}", "u", 100, quota=350, ttl=60)
                                     for n in range(10)))
    assert sum(check.granted for check in results) == 3


async def test_when_quota_is_tight_uploads_are_judged_on_what_they_received(any_store):
    # room ahead is granted while it fits beside what the others hold
    roomy = await any_store.reserve_upload("r1", "u", 600, quota=1000, ttl=60, used=100)
    assert (roomy.granted, roomy.held) == (True, 600)
    # no room for 600 ahead beside r1's 600: r2 holds just what it received, judged against r1's 100
    tight = await any_store.reserve_upload("r2", "u", 600, quota=1000, ttl=60, used=300)
    assert (tight.granted, tight.held, tight.reserved, tight.available) == (True, 300, 100, 900)
    refused = await any_store.reserve_upload("r3", "u", 700, quota=1000, ttl=60, used=650)
    assert (refused.granted, refused.held, refused.reserved) == (False, 0, 400)
    held = {entry.id: (entry.bytes, entry.used) for entry in await any_store.upload_reservations("u")}
    assert held == {"r1": (600, 100), "r2": (300, 300)}
    # the younger upload yields: the older one grows past what both together may hold...
    assert (await any_store.reserve_upload("r1", "u", 900, quota=1000, ttl=60, used=800)).granted
    # ...and the younger one is refused when it next asks, judged against the older one's 800
    younger = await any_store.reserve_upload("r2", "u", 400, quota=1000, ttl=60, used=301)
    assert (younger.granted, younger.reserved) == (False, 800)


async def test_reservations_name_their_holder(any_store):
    holder = UploadHolder("node1", 4242, "boot:123")
    await any_store.reserve_upload("r1", "u", 10, quota=100, ttl=60, holder=holder)
    await any_store.reserve_upload("r2", "v", 20, quota=100, ttl=60)
    await any_store.reserve_upload("r1", "u", 15, quota=100, ttl=60, holder=holder)  # renewed
    everyone = await any_store.upload_reservations()
    assert sorted((entry.id, entry.owner, entry.bytes, entry.holder) for entry in everyone) == [
        ("r1", "u", 15, holder), ("r2", "v", 20, UploadHolder())]
    assert [entry.id for entry in await any_store.upload_reservations("v")] == ["r2"]
    await any_store.release_upload("r1")
    assert [entry.id for entry in await any_store.upload_reservations()] == ["r2"]


