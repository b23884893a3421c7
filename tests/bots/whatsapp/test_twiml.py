from bots.whatsapp.twiml import EMPTY_TWIML, TWIML_CONTENT_TYPE, empty_response


def test_empty_twiml():
    assert EMPTY_TWIML == empty_response() == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    assert TWIML_CONTENT_TYPE == "text/xml"
