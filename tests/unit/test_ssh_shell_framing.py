from agent.connections.sshshell import _framed

TRAILER = b"\n@@agent-shell-done:0123456789abcdef\n"


def test_output_that_ends_with_its_end_line_is_kept_whole_and_the_shell_goes_on():
    done = _framed(b"facts\n" + TRAILER, TRAILER, cap=1024)
    assert (done.data, done.truncated, done.reusable) == (b"facts\n", False, True)


def test_text_after_the_end_line_means_the_shell_is_not_reused():
    done = _framed(b"facts\n" + TRAILER + b"more", TRAILER, cap=1024)
    assert (done.data, done.reusable) == (b"facts\n", False)


def test_a_shell_that_ended_without_its_end_line_is_not_reused():
    done = _framed(b"this account is not available\n", TRAILER, cap=1024)
    assert (done.data, done.truncated, done.reusable) == (
        b"this account is not available\n",
        False,
        False,
    )


def test_output_past_the_cap_is_cut_and_the_shell_closed():
    done = _framed(b"y\n" * 600, TRAILER, cap=1000)
    assert (len(done.data), done.truncated, done.reusable) == (1000, True, False)


def test_output_past_the_cap_is_cut_even_when_its_end_line_arrived():
    done = _framed(b"y" * 1010 + TRAILER, TRAILER, cap=1000)
    assert (len(done.data), done.truncated, done.reusable) == (1000, True, False)
