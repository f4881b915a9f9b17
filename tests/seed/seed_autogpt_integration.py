# The four tests of MeshGuard's AutoGPT integration guide ("Testing"), copied verbatim; only the
# import of the five command functions test_full_workflow uses is added. Run by
# tests/test_seed_document.py inside .venv-autogpt (real AutoGPT 0.2.2) against a real gateway with
# policies/autogpt.yaml; conftest.py gives each test a fresh agent, as a user's conftest would.
import pytest
from meshguard_autogpt import gateway
from meshguard_autogpt import browse_website, execute_python_code, execute_shell, google_search, write_file

def test_allowed_action():
    """Test that allowed actions pass."""
    decision = gateway.check_permission("browse:web", "https://example.com")
    assert decision["allowed"] == True

def test_denied_action():
    """Test that shell execution is blocked."""
    decision = gateway.check_permission("execute:shell", "rm -rf /")
    assert decision["allowed"] == False
    assert "denied" in decision["reason"].lower()

def test_rate_limiting():
    """Test that rate limits are enforced."""
    # Make many requests quickly
    for i in range(50):
        gateway.check_permission("browse:web", f"https://example.com/{i}")
    
    # Next request should be rate limited
    decision = gateway.check_permission("browse:web", "https://example.com/final")
    assert decision["allowed"] == False
    assert "rate" in decision["reason"].lower()

def test_full_workflow():
    """Test a complete AutoGPT workflow through MeshGuard."""
    import uuid
    
    # Set trace for this test
    trace_id = str(uuid.uuid4())
    gateway.set_trace(trace_id)
    
    # Simulate AutoGPT workflow
    results = []
    
    # 1. Web search (should succeed)
    result = google_search("Python tutorials")
    assert "blocked" not in str(result).lower()
    results.append(("search", result))
    
    # 2. Browse website (should succeed)
    result = browse_website("https://python.org")
    assert "blocked" not in str(result).lower()
    results.append(("browse", result))
    
    # 3. Write file (should succeed)
    result = write_file("workspace/notes.txt", "Some notes")
    assert "blocked" not in str(result).lower()
    results.append(("write", result))
    
    # 4. Execute Python (should succeed)
    result = execute_python_code("print('Hello')")
    assert "blocked" not in str(result).lower()
    results.append(("python", result))
    
    # 5. Execute shell (should be BLOCKED)
    result = execute_shell("ls -la")
    assert result["status"] == "blocked"
    results.append(("shell", result))
    
    print(f"\nüîç View audit: meshguard audit trace {trace_id}")
    return results
