"""Microsoft's Personalizer Python quickstart, run against Loopwise.

The same program shape and the same SDK calls as the quickstart in Azure's documentation
(azure-cognitiveservices-personalizer: PersonalizerClient, RankableAction, RankRequest,
client.rank, client.events.reward, msrest's CognitiveServicesCredentials): a grocery site
ranks its featured product for simulated shoppers and rewards a purchase. Only the key
and the endpoint differ from a Personalizer program: here they point at `loopwise up`
(docs/migration-from-personalizer.md walks through the conversion).

    pip install azure-cognitiveservices-personalizer
    python examples/personalizer_quickstart.py        # Q to stop after a round
"""

import os
import random

from azure.cognitiveservices.personalizer import PersonalizerClient
from azure.cognitiveservices.personalizer.models import RankableAction, RankRequest
from msrest.authentication import CognitiveServicesCredentials

key = os.environ.get("LOOPWISE_KEY", "any-key-while-LOOPWISE_API_KEYS-is-unset")
endpoint = os.environ.get("LOOPWISE_ENDPOINT", "http://127.0.0.1:8000")

client = PersonalizerClient(endpoint, CognitiveServicesCredentials(key))

products = {
    "lentil-soup": {
        "maker": {"brand": "souperb"},
        "details": {"pack": 2, "aisle": "canned", "price": 4},
        "diet": {"vegan": True, "low_salt": False, "high_protein": True},
    },
    "steak-box": {
        "maker": {"brand": "prairie"},
        "details": {"pack": 1, "aisle": "meat", "price": 24},
        "diet": {"vegan": False, "low_salt": True, "high_protein": True},
    },
    "rice-crackers": {
        "maker": {"brand": "crunchco"},
        "details": {"pack": 6, "aisle": "snacks", "price": 3},
        "diet": {"vegan": True, "low_salt": False, "high_protein": False},
    },
    "salad-kit": {
        "maker": {"brand": "greenleaf"},
        "details": {"pack": 1, "aisle": "produce", "price": 6},
        "diet": {"vegan": True, "low_salt": True, "high_protein": False},
    },
}

shoppers = {
    "Ana": {"diet": "vegan", "basket": "0-20", "browser": "firefox"},
    "Ben": {"diet": "protein", "basket": "50+", "browser": "chrome"},
    "Chloe": {"diet": {"vegan", "low_salt"}, "basket": "20-50", "browser": "safari"},
}


def get_actions():
    return [RankableAction(id=pid, features=[f]) for pid, f in products.items()]


def get_context(shopper):
    return [
        shoppers[shopper],
        {"region": random.choice(["north", "south", "coast"])},
        {"time_of_day": random.choice(["morning", "noon", "evening"])},
    ]


def get_reward_score(shopper, product_id, context):
    diet = products[product_id]["diet"]
    if shopper == "Ana":
        return 1.0 if diet["vegan"] else 0.0
    if shopper == "Ben":
        return 1.0 if diet["high_protein"] and context[1]["region"] != "coast" else 0.0
    return 1.0 if diet["vegan"] and diet["low_salt"] else 0.0


def run_personalizer_cycle():
    actions = get_actions()
    for shopper in random.choices(list(shoppers), k=5):
        context = get_context(shopper)
        rank_request = RankRequest(actions=actions, context_features=context)
        response = client.rank(rank_request=rank_request)
        event_id, product_id = response.event_id, response.reward_action_id
        score = get_reward_score(shopper, product_id, context)
        client.events.reward(event_id=event_id, value=score)
        print(f"{shopper}: featured {product_id}, reward {score} (event {event_id})")


keep_going = True
while keep_going:
    run_personalizer_cycle()
    answer = input("Press Q to exit, or any other key to run another round: ")
    keep_going = answer.lower() != "q"
