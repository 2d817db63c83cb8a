from tests.helpers import PASSWORD, csrf_of, log_in


async def test_log_in_and_out_through_the_forms(archive, client, make_user):
    await make_user("alice")
    response = await log_in(client, "alice")
    assert response.status_code == 302
    page = await (await client.get("/")).get_data(as_text=True)
    assert "alice" in page and "Log out" in page
    token = await csrf_of(client)
    response = await client.post("/logout", form={"csrf_token": token})
    assert response.status_code == 302
    page = await (await client.get("/")).get_data(as_text=True)
    assert "Log in" in page and "Log out" not in page


async def test_wrong_password_and_missing_csrf(archive, client, make_user):
    await make_user("bob")
    response = await log_in(client, "bob", PASSWORD + "x")
    assert response.status_code == 401
    assert "Wrong username or password" in await response.get_data(as_text=True)
    response = await client.post("/login", form={"username": "bob", "password": PASSWORD})
    assert response.status_code == 403
